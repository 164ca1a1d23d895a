//! Key URIs: how configuration names a private key (`file:/path/key.pem`,
//! `pkcs11:token=CA;object=ca-key;type=private?pin-source=file:/etc/brski/pin`).

use super::{load_key_file, KeyError, Signer};
use std::path::PathBuf;

/// The PKCS#11 module used when a `pkcs11:` URI names none (SoftHSM v2 on Debian/Ubuntu).
pub const DEFAULT_PKCS11_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A parsed key URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyUri {
    /// `file:<path>` or `file://<absolute path>`: a PKCS#8 or SEC1 PEM file.
    File(PathBuf),
    /// `pkcs11:...` (RFC 7512): a private key object in a PKCS#11 token.
    Pkcs11(Pkcs11Uri),
    /// `tpm:handle=0x81020001?tcti=...`: a persistent signing key in a TPM 2.0.
    Tpm(TpmUri),
}

/// The TCTI used when a `tpm:` URI names none and `TPM2TOOLS_TCTI` / `TCTI` are unset: the
/// kernel's resource-managed TPM device.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

/// A `tpm:` key URI: a persistent key in a TPM 2.0, reached through a TCTI.
///
/// Form: `tpm:handle=<persistent handle, hex or decimal>[?tcti=<TCTI configuration>]`, e.g.
/// `tpm:handle=0x81020001?tcti=swtpm:path=/run/swtpm/sock`. Without `tcti=`, the environment's
/// `TPM2TOOLS_TCTI` or `TCTI`, else [`DEFAULT_TCTI`]. brski keeps keys at persistent handles
/// (never as blobs on disk) so a key is addressed the same way by every process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmUri {
    /// The persistent handle (0x81000000..=0x81FFFFFF).
    pub handle: u32,
    /// The TCTI configuration string, when the URI gives one.
    pub tcti: Option<String>,
}

impl TpmUri {
    /// A URI for `handle` reached through `tcti`.
    pub fn new(handle: u32, tcti: &str) -> Self {
        TpmUri { handle, tcti: Some(tcti.to_string()) }
    }

    /// The TCTI to open: the URI's, else the environment's, else [`DEFAULT_TCTI`].
    pub fn tcti(&self) -> String {
        self.tcti
            .clone()
            .or_else(|| std::env::var("TPM2TOOLS_TCTI").ok())
            .or_else(|| std::env::var("TCTI").ok())
            .unwrap_or_else(|| DEFAULT_TCTI.to_string())
    }

    fn parse(s: &str) -> Result<Self, KeyError> {
        let bad = |why: &str| KeyError::UnsupportedUri(format!("{s} ({why})"));
        let rest = s.strip_prefix("tpm:").ok_or_else(|| bad("not a tpm: URI"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut handle = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            match attr.split_once('=') {
                Some(("handle", v)) => handle = Some(parse_handle(v).ok_or_else(|| bad("bad handle"))?),
                _ => return Err(bad("the path has only handle=")),
            }
        }
        let handle = handle.ok_or_else(|| bad("name the key with handle=0x81......"))?;
        if !(0x8100_0000..=0x81FF_FFFF).contains(&handle) {
            return Err(bad("handle is not a persistent handle (0x81000000..0x81FFFFFF)"));
        }
        let mut tcti = None;
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            match attr.split_once('=') {
                Some(("tcti", v)) if !v.is_empty() => {
                    let bytes = pct_decode(v).ok_or_else(|| bad("bad percent-encoding in tcti"))?;
                    tcti = Some(String::from_utf8(bytes).map_err(|_| bad("tcti is not UTF-8"))?);
                }
                _ => return Err(bad("the query has only tcti=")),
            }
        }
        Ok(TpmUri { handle, tcti })
    }
}

fn parse_handle(v: &str) -> Option<u32> {
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

impl std::fmt::Display for TpmUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "tpm:handle=0x{:08x}", self.handle)?;
        match &self.tcti {
            Some(t) => write!(f, "?tcti={}", t.replace('%', "%25").replace('&', "%26").replace('#', "%23")),
            None => Ok(()),
        }
    }
}

/// Where the user PIN of a PKCS#11 token comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum PinSource {
    /// `pin-value=...` in the URI itself.
    Value(String),
    /// `pin-source=file:<path>`: the first line of a file.
    File(PathBuf),
}

impl std::fmt::Debug for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            // Never print the PIN itself.
            PinSource::Value(_) => f.write_str("Value(***)"),
            PinSource::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl PinSource {
    /// Reads the PIN (from the file for [`PinSource::File`], trailing newline removed).
    pub fn read(&self) -> Result<String, KeyError> {
        match self {
            PinSource::Value(v) => Ok(v.clone()),
            PinSource::File(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|source| KeyError::Io { path: p.display().to_string(), source })?;
                Ok(text.lines().next().unwrap_or("").to_string())
            }
        }
    }
}

/// A `pkcs11:` URI (RFC 7512), with the attributes brski uses.
///
/// Path attributes: `token` (label), `serial`, `slot-id`, `object` (label), `id` (CKA_ID,
/// percent-encoded bytes), `type` (only `private`). Query attributes: `module-path` (default
/// [`DEFAULT_PKCS11_MODULE`]), `pin-value`, `pin-source` (`file:<path>`). `Display` and
/// `Debug` never show the PIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Uri {
    /// `token=`: the token label.
    pub token: Option<String>,
    /// `serial=`: the token serial number.
    pub serial: Option<String>,
    /// `slot-id=`: the slot number.
    pub slot_id: Option<u64>,
    /// `object=`: the key's CKA_LABEL.
    pub object: Option<String>,
    /// `id=`: the key's CKA_ID.
    pub id: Option<Vec<u8>>,
    /// `module-path=`: the PKCS#11 module to load.
    pub module_path: PathBuf,
    /// `pin-value=` or `pin-source=`.
    pub pin: Option<PinSource>,
}

impl Pkcs11Uri {
    /// Parses a `pkcs11:` URI: path attributes split on `;`, query attributes on `&`, each
    /// percent-decoded; the key must be named by `object=` or `id=`.
    fn parse(s: &str) -> Result<Self, KeyError> {
        let bad = |why: String| KeyError::UnsupportedUri(format!("{} ({why})", redact_pin(s)));
        let rest = s.strip_prefix("pkcs11:").ok_or_else(|| bad("not a pkcs11: URI".into()))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut uri = Pkcs11Uri {
            token: None,
            serial: None,
            slot_id: None,
            object: None,
            id: None,
            module_path: PathBuf::from(DEFAULT_PKCS11_MODULE),
            pin: None,
        };
        let mut module_path = None;
        for attr in path.split(';').filter(|a| !a.is_empty()) {
            uri.path_attribute(attr).map_err(bad)?;
        }
        for attr in query.split('&').filter(|a| !a.is_empty()) {
            uri.query_attribute(attr, &mut module_path).map_err(bad)?;
        }
        if uri.object.is_none() && uri.id.is_none() {
            return Err(bad("name the key with object= or id=".into()));
        }
        if let Some(p) = module_path {
            uri.module_path = p;
        }
        Ok(uri)
    }

    /// Takes one path attribute `name=value` (RFC 7512 §2.3); `Err` says why it is refused.
    fn path_attribute(&mut self, attr: &str) -> Result<(), String> {
        let (name, value) = attr.split_once('=').ok_or_else(|| format!("'{attr}' has no '='"))?;
        let bytes = pct_decode(value).ok_or_else(|| format!("bad percent-encoding in {name}"))?;
        let text = || String::from_utf8(bytes.clone()).map_err(|_| format!("{name} is not UTF-8"));
        match name {
            "token" => self.token = Some(text()?),
            "serial" => self.serial = Some(text()?),
            "slot-id" => {
                self.slot_id = Some(text()?.parse().map_err(|_| "slot-id is not a number".to_string())?)
            }
            "object" => self.object = Some(text()?),
            "id" => self.id = Some(bytes),
            "type" if text()? == "private" => {}
            "type" => return Err("only type=private names a signing key".into()),
            // Informational attributes that do not change which key is meant.
            "manufacturer"
            | "model"
            | "library-manufacturer"
            | "library-description"
            | "library-version"
            | "slot-description"
            | "slot-manufacturer" => {}
            _ => return Err(format!("unknown path attribute '{name}'")),
        }
        Ok(())
    }

    /// Takes one query attribute `name=value` (RFC 7512 §2.4); `module-path` goes to
    /// `module_path`, applied after all attributes. `Err` says why it is refused.
    fn query_attribute(&mut self, attr: &str, module_path: &mut Option<PathBuf>) -> Result<(), String> {
        let (name, value) = attr
            .split_once('=')
            .ok_or_else(|| format!("'{name}' has no '='", name = attr.split('=').next().unwrap_or("")))?;
        let bytes = pct_decode(value).ok_or_else(|| format!("bad percent-encoding in {name}"))?;
        let text = String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8"))?;
        match name {
            "module-path" => *module_path = Some(PathBuf::from(text)),
            "pin-value" => self.pin = Some(PinSource::Value(text)),
            "pin-source" => {
                let path = text.strip_prefix("file://").or_else(|| text.strip_prefix("file:"));
                let path = match path {
                    Some(p) => p,
                    None if text.starts_with('/') => text.as_str(),
                    None => return Err("pin-source must be file:<path>".into()),
                };
                self.pin = Some(PinSource::File(PathBuf::from(path)));
            }
            _ => return Err(format!("unsupported query attribute '{name}'")),
        }
        Ok(())
    }
}

impl std::fmt::Display for Pkcs11Uri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut path = Vec::new();
        if let Some(t) = &self.token {
            path.push(format!("token={}", pct_encode(t.as_bytes())));
        }
        if let Some(s) = &self.serial {
            path.push(format!("serial={}", pct_encode(s.as_bytes())));
        }
        if let Some(s) = self.slot_id {
            path.push(format!("slot-id={s}"));
        }
        if let Some(o) = &self.object {
            path.push(format!("object={}", pct_encode(o.as_bytes())));
        }
        if let Some(id) = &self.id {
            path.push(format!("id={}", id.iter().map(|b| format!("%{b:02x}")).collect::<String>()));
        }
        path.push("type=private".to_string());
        write!(f, "pkcs11:{}", path.join(";"))?;
        let mut query = Vec::new();
        if self.module_path.as_os_str() != DEFAULT_PKCS11_MODULE {
            query.push(format!("module-path={}", pct_encode(self.module_path.to_string_lossy().as_bytes())));
        }
        match &self.pin {
            Some(PinSource::Value(_)) => query.push("pin-value=***".to_string()),
            Some(PinSource::File(p)) => {
                query.push(format!("pin-source=file:{}", pct_encode(p.to_string_lossy().as_bytes())))
            }
            None => {}
        }
        if !query.is_empty() {
            write!(f, "?{}", query.join("&"))?;
        }
        Ok(())
    }
}

/// Replaces the value of any `pin-value=` in a URI string with `***`.
pub fn redact_pin(uri: &str) -> String {
    let mut out = String::with_capacity(uri.len());
    let mut rest = uri;
    while let Some(i) = rest.find("pin-value=") {
        let start = i + "pin-value=".len();
        out.push_str(&rest[..start]);
        out.push_str("***");
        rest = &rest[start..];
        rest = rest.find('&').map(|j| &rest[j..]).unwrap_or("");
    }
    out.push_str(rest);
    out
}

fn pct_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Some(out)
}

fn pct_encode(b: &[u8]) -> String {
    b.iter()
        .map(|&c| match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' | b':' => {
                (c as char).to_string()
            }
            _ => format!("%{c:02X}"),
        })
        .collect()
}

impl std::str::FromStr for KeyUri {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.split_once(':') {
            Some(("file", rest)) if !rest.is_empty() => {
                // RFC 8089 §2: `file://<authority>/path`; an empty authority or `localhost`
                // is this host, so `file:///abs` and `file://localhost/abs` are `/abs`.
                let path = match rest.strip_prefix("//") {
                    Some(r) => r.strip_prefix("localhost").filter(|p| p.starts_with('/')).unwrap_or(r),
                    None => rest,
                };
                Ok(KeyUri::File(PathBuf::from(path)))
            }
            Some(("pkcs11", _)) => Ok(KeyUri::Pkcs11(Pkcs11Uri::parse(s)?)),
            Some(("tpm", _)) => Ok(KeyUri::Tpm(TpmUri::parse(s)?)),
            _ => Err(KeyError::UnsupportedUri(redact_pin(s))),
        }
    }
}

impl std::fmt::Display for KeyUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyUri::File(p) => write!(f, "file:{}", p.display()),
            KeyUri::Pkcs11(u) => u.fmt(f),
            KeyUri::Tpm(u) => u.fmt(f),
        }
    }
}

/// Opens the private key a URI names, as a [`Signer`].
pub fn load_signer(uri: &str) -> Result<Box<dyn Signer>, KeyError> {
    match uri.parse::<KeyUri>()? {
        KeyUri::File(path) => Ok(Box::new(load_key_file(&path)?)),
        #[cfg(feature = "pkcs11")]
        KeyUri::Pkcs11(u) => Ok(Box::new(super::pkcs11::Pkcs11Signer::open(&u)?)),
        #[cfg(not(feature = "pkcs11"))]
        KeyUri::Pkcs11(u) => Err(KeyError::Pkcs11 {
            uri: u.to_string(),
            detail: "this build has no PKCS#11 support (build with the 'pkcs11' feature)".to_string(),
        }),
        #[cfg(feature = "tpm")]
        KeyUri::Tpm(u) => Ok(Box::new(crate::tpm::TpmSigner::open(&u)?)),
        #[cfg(not(feature = "tpm"))]
        KeyUri::Tpm(u) => Err(KeyError::Tpm {
            uri: u.to_string(),
            detail: "this build has no TPM support (build with the 'tpm' feature)".to_string(),
        }),
    }
}

#[cfg(test)]
mod tests;
