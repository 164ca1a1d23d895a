//! The agent issuance policy (`agent-policy.toml`): the trust domain, which proxies may ask for
//! which agent ids, lifetimes, the owner anchors (which owner keys exist, which agent ids each
//! owner may own, with which models), whether an owner binding is required, and how TPM quotes
//! in the evidence are appraised (`[attestation]`).

use serde::Deserialize;
use shared::agent::tpm_quote::PcrPolicy;
use shared::agent::{
    check_owner_id, check_trust_domain, id_matches, AgentId, Model, OwnerAnchor, OwnerAnchors,
};
use shared::pki;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentPolicyFile {
    /// The trust domain, e.g. `campus.example`.
    pub trust_domain: String,
    /// `spiffe` instead of `wimse` agent ids.
    #[serde(default)]
    pub spiffe: bool,
    /// Lifetime when the request asks for more than allowed or for nothing particular.
    #[serde(default = "default_ttl")]
    pub default_ttl_secs: u64,
    /// Largest credential lifetime (at most 24 h).
    #[serde(default = "default_ttl")]
    pub max_ttl_secs: u64,
    /// Cap on an owner grant (renewals reuse an approval until then).
    #[serde(default = "default_grant_cap")]
    pub grant_cap_secs: u64,
    /// Refuse credentials without an owner binding.
    #[serde(default)]
    pub require_owner: bool,
    /// Lifetime of a model 3 owner challenge (at most 300 s).
    #[serde(default = "default_challenge_ttl")]
    pub challenge_ttl_secs: u64,
    /// Subject template for agent certificates; `{name}` (the agent id's last path segment),
    /// `{org}` and `{unit}` (from the owner entry) are replaced. Empty subject when absent.
    #[serde(default)]
    pub subject_template: Option<String>,
    /// Which proxies may request which agent ids.
    #[serde(default, rename = "proxy")]
    pub proxies: Vec<ProxyRule>,
    /// The owner anchors.
    #[serde(default, rename = "owner")]
    pub owners: Vec<OwnerFile>,
    /// How TPM quotes in the evidence are appraised (absent: they are not).
    #[serde(default)]
    pub attestation: Option<AttestationFile>,
}

/// The `[attestation]` table as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFile {
    /// PEM file: the CAs that certify devices' TPM attestation keys.
    pub ak_anchors: PathBuf,
    /// Refuse requests whose evidence carries no TPM quote.
    #[serde(default)]
    pub require_quote: bool,
    /// Expected sha256 PCR values: index (`"0"`-`"23"`) -> 64 hex digits.
    #[serde(default)]
    pub pcrs: BTreeMap<String, String>,
}

/// The `[attestation]` table, loaded.
#[derive(Debug, Clone)]
pub struct Attestation {
    /// The CAs that certify TPM attestation keys.
    pub anchors: Vec<x509_cert::Certificate>,
    /// Refuse requests without a TPM quote.
    pub require_quote: bool,
    /// The expected PCR values.
    pub policy: PcrPolicy,
}

fn default_ttl() -> u64 {
    3600
}
fn default_challenge_ttl() -> u64 {
    300
}
fn default_grant_cap() -> u64 {
    shared::agent::oa::DEFAULT_GRANT_SECS as u64
}

/// A `[[proxy]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyRule {
    /// The proxy's LDevID serialNumber (exact, or a prefix ending in `*`; `*` = every proxy).
    pub serial: String,
    /// Agent id patterns (exact or ending in `*`).
    pub agents: Vec<String>,
    /// Largest lifetime for this proxy's agents.
    #[serde(default)]
    pub max_ttl_secs: Option<u64>,
}

/// An `[[owner]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerFile {
    /// Owner id (`mailto:`, `https://`, `wimse://.../owner/...`).
    pub id: String,
    /// Key id the owner's approvals may name.
    pub kid: String,
    /// PEM file: the owner's public key or a certificate carrying it.
    pub key: PathBuf,
    /// Agent id patterns this owner may own.
    pub agents: Vec<String>,
    /// Models this owner may use (default: all three).
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Organization for the subject template.
    #[serde(default)]
    pub organization: Option<String>,
    /// Organizational unit for the subject template.
    #[serde(default)]
    pub unit: Option<String>,
    /// Model 3: HTTPS URL the server POSTs new challenges to (the owner may also poll).
    #[serde(default)]
    pub webhook: Option<String>,
    /// PEM file with the anchors for the webhook's TLS certificate (default: system anchors).
    #[serde(default)]
    pub webhook_ca: Option<PathBuf>,
}

/// An owner, loaded.
#[derive(Debug, Clone)]
pub struct OwnerRule {
    /// The anchor (owner id, kid, key).
    pub anchor: OwnerAnchor,
    /// Agent id patterns.
    pub agents: Vec<String>,
    /// Allowed models.
    pub models: Vec<Model>,
    /// Organization.
    pub organization: Option<String>,
    /// Unit.
    pub unit: Option<String>,
    /// Model 3 webhook.
    pub webhook: Option<Webhook>,
}

/// Where model 3 challenges are pushed.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// `https://host[:port]/path`.
    pub url: String,
    /// TLS anchors (empty: the system's).
    pub anchors: Vec<x509_cert::Certificate>,
}

/// The policy, loaded and checked.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    /// The trust domain.
    pub trust_domain: String,
    /// Agent id scheme (`wimse` or `spiffe`).
    pub scheme: &'static str,
    /// Default lifetime (seconds).
    pub default_ttl: u64,
    /// Largest lifetime (seconds).
    pub max_ttl: u64,
    /// Grant cap (seconds).
    pub grant_cap: i64,
    /// Owner binding required.
    pub require_owner: bool,
    /// Model 3 challenge lifetime (seconds).
    pub challenge_ttl: i64,
    /// Subject template.
    pub subject_template: Option<String>,
    /// Proxy rules.
    pub proxies: Vec<ProxyRule>,
    /// Owners.
    pub owners: Vec<OwnerRule>,
    /// TPM quote appraisal, when configured.
    pub attestation: Option<Attestation>,
}

/// A policy that cannot be used, naming the file and the key.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {reason}")]
pub struct PolicyError {
    /// The file.
    pub file: String,
    /// The key.
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn perr(file: &Path, key: &str, reason: impl std::fmt::Display) -> PolicyError {
    PolicyError { file: file.display().to_string(), key: key.to_string(), reason: reason.to_string() }
}

impl AgentPolicy {
    /// Loads and checks `path`; relative key paths are resolved against its directory.
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| perr(path, "file", e))?;
        let file: AgentPolicyFile = toml::from_str(&text).map_err(|e| perr(path, "syntax", e.message()))?;
        Self::from_file(file, path)
    }

    /// Checks a parsed file (`path` names it in errors and anchors relative paths).
    pub fn from_file(f: AgentPolicyFile, path: &Path) -> Result<Self, PolicyError> {
        check_trust_domain(&f.trust_domain).map_err(|e| perr(path, "trust_domain", e))?;
        if f.max_ttl_secs == 0 || f.max_ttl_secs > shared::agent::cert::MAX_AGENT_CERT_SECS {
            return Err(perr(path, "max_ttl_secs", "must be between 1 and 86400"));
        }
        for (i, p) in f.proxies.iter().enumerate() {
            if p.agents.is_empty() {
                return Err(perr(path, &format!("proxy[{i}].agents"), "names no agent id pattern"));
            }
        }
        let owners = f
            .owners
            .iter()
            .enumerate()
            .map(|(i, o)| load_owner(path, i, o))
            .collect::<Result<Vec<_>, _>>()?;
        let attestation = f.attestation.as_ref().map(|a| load_attestation(path, a)).transpose()?;
        Ok(AgentPolicy {
            trust_domain: f.trust_domain,
            scheme: if f.spiffe { "spiffe" } else { "wimse" },
            default_ttl: f.default_ttl_secs.clamp(1, f.max_ttl_secs),
            max_ttl: f.max_ttl_secs,
            grant_cap: f.grant_cap_secs.min(shared::agent::oa::DEFAULT_GRANT_SECS as u64) as i64,
            require_owner: f.require_owner,
            challenge_ttl: f.challenge_ttl_secs.clamp(1, 300) as i64,
            subject_template: f.subject_template,
            proxies: f.proxies,
            owners,
            attestation,
        })
    }

    /// `wimse://<trust-domain>`: the ACR audience.
    pub fn issuance_uri(&self) -> String {
        format!("{}://{}", self.scheme, self.trust_domain)
    }

    /// The owner anchors, for OA verification.
    pub fn owner_anchors(&self) -> OwnerAnchors {
        OwnerAnchors::new(self.owners.iter().map(|o| o.anchor.clone()).collect())
    }

    /// The proxy rule for a proxy serialNumber that allows `id`, if any.
    pub fn proxy_rule(&self, serial: &str, id: &AgentId) -> Option<&ProxyRule> {
        self.proxies
            .iter()
            .find(|p| serial_matches(&p.serial, serial) && p.agents.iter().any(|a| id_matches(a, id)))
    }

    /// The owner rules of owner id `owner` whose key is `spki`.
    pub fn owner_rule(&self, owner: &str, spki: &[u8]) -> Option<&OwnerRule> {
        self.owners.iter().find(|o| o.anchor.owner == owner && o.anchor.spki_der == spki)
    }

    /// Owner rules whose key is `spki` (an owner or gateway authenticating by TLS).
    pub fn owners_with_key(&self, spki: &[u8]) -> Vec<&OwnerRule> {
        self.owners.iter().filter(|o| o.anchor.spki_der == spki).collect()
    }
}

fn serial_matches(pattern: &str, serial: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => serial.starts_with(prefix),
        None => pattern == serial,
    }
}

fn load_owner(path: &Path, i: usize, o: &OwnerFile) -> Result<OwnerRule, PolicyError> {
    let key = |k: &str| format!("owner[{i}].{k}");
    check_owner_id(&o.id).map_err(|e| perr(path, &key("id"), e))?;
    let file = if o.key.is_absolute() {
        o.key.clone()
    } else {
        path.parent().unwrap_or(Path::new(".")).join(&o.key)
    };
    let pem =
        std::fs::read(&file).map_err(|e| perr(path, &key("key"), format!("{}: {e}", file.display())))?;
    let spki_der =
        spki_from_pem(&pem).map_err(|e| perr(path, &key("key"), format!("{}: {e}", file.display())))?;
    let models = match &o.models {
        None => vec![Model::AgentMediated, Model::OwnerMediated, Model::ServerMediated],
        Some(list) => list
            .iter()
            .map(|m| Model::parse(m).filter(|m| *m != Model::None))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                perr(path, &key("models"), "models are agent-mediated, owner-mediated, server-mediated")
            })?,
    };
    let webhook = match &o.webhook {
        None => None,
        Some(url) if url.starts_with("https://") => {
            let anchors = match &o.webhook_ca {
                None => Vec::new(),
                Some(f) => {
                    let f = if f.is_absolute() {
                        f.clone()
                    } else {
                        path.parent().unwrap_or(Path::new(".")).join(f)
                    };
                    let pem = std::fs::read(&f)
                        .map_err(|e| perr(path, &key("webhook_ca"), format!("{}: {e}", f.display())))?;
                    pki::certs_from_pem(&pem).map_err(|e| perr(path, &key("webhook_ca"), e))?
                }
            };
            Some(Webhook { url: url.clone(), anchors })
        }
        Some(_) => return Err(perr(path, &key("webhook"), "must be an https:// URL")),
    };
    Ok(OwnerRule {
        webhook,
        anchor: OwnerAnchor { owner: o.id.clone(), kid: o.kid.clone(), spki_der },
        agents: o.agents.clone(),
        models,
        organization: o.organization.clone(),
        unit: o.unit.clone(),
    })
}

/// Largest PCR index (a PC-client TPM has PCRs 0-23).
const MAX_PCR_INDEX: u8 = 23;

fn load_attestation(path: &Path, a: &AttestationFile) -> Result<Attestation, PolicyError> {
    let file = relative_to(path, &a.ak_anchors);
    let pem = std::fs::read(&file)
        .map_err(|e| perr(path, "attestation.ak_anchors", format!("{}: {e}", file.display())))?;
    let anchors = pki::certs_from_pem(&pem)
        .map_err(|e| perr(path, "attestation.ak_anchors", format!("{}: {e}", file.display())))?;
    let mut pcrs = BTreeMap::new();
    for (index, value) in &a.pcrs {
        let key = format!("attestation.pcrs.{index}");
        let i =
            index.parse::<u8>().ok().filter(|i| *i <= MAX_PCR_INDEX && index == &i.to_string()).ok_or_else(
                || perr(path, &key, format!("a PCR index is a number from 0 to {MAX_PCR_INDEX}")),
            )?;
        let v = hex::decode(value).map_err(|e| perr(path, &key, format!("not hex: {e}")))?;
        if v.len() != 32 {
            return Err(perr(
                path,
                &key,
                format!("a sha256 PCR value is 32 bytes (64 hex digits), this is {} bytes", v.len()),
            ));
        }
        pcrs.insert(i, v);
    }
    Ok(Attestation { anchors, require_quote: a.require_quote, policy: PcrPolicy { pcrs } })
}

/// `p` as written in the policy file: absolute, or relative to the policy file's directory.
fn relative_to(policy: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        policy.parent().unwrap_or(Path::new(".")).join(p)
    }
}

/// The SubjectPublicKeyInfo of a PEM file holding a PUBLIC KEY or a CERTIFICATE.
pub(crate) fn spki_from_pem(pem: &[u8]) -> Result<Vec<u8>, String> {
    if let Ok(certs) = pki::certs_from_pem(pem) {
        return Ok(pki::spki_der(&certs[0]));
    }
    let text = std::str::from_utf8(pem).map_err(|_| "not PEM text".to_string())?;
    let (label, der) = der::pem::decode_vec(text.trim().as_bytes()).map_err(|e| format!("PEM: {e}"))?;
    if label != "PUBLIC KEY" {
        return Err(format!("expected a PUBLIC KEY or CERTIFICATE, found {label}"));
    }
    shared::crypto::PublicKey::from_spki_der(&der).map_err(|e| e.to_string())?;
    Ok(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn init_template_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "p.toml", &crate::init::agent_policy_template("campus.example"));
        let policy = AgentPolicy::load(&p).unwrap();
        assert_eq!(policy.issuance_uri(), "wimse://campus.example");
        let id = AgentId::parse("wimse://campus.example/agent/x").unwrap();
        assert!(policy.proxy_rule("SN-1", &id).is_some());
        let other = AgentId::parse("wimse://campus.example/robot/x").unwrap();
        assert!(policy.proxy_rule("SN-1", &other).is_none());
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "p.toml", "trust_domain = \"Campus\"\n");
        let e = AgentPolicy::load(&p).unwrap_err();
        assert_eq!(e.key, "trust_domain");
        let p = write(dir.path(), "q.toml", "trust_domain = \"td\"\ncolour = 1\n");
        let e = AgentPolicy::load(&p).unwrap_err();
        assert!(e.reason.contains("colour"), "{e}");
        let text = "trust_domain = \"td\"\n[[owner]]\nid = \"mailto:a@b\"\nkid = \"k\"\nkey = \"missing.pem\"\nagents = [\"*\"]\n";
        let p = write(dir.path(), "r.toml", text);
        let e = AgentPolicy::load(&p).unwrap_err();
        assert_eq!(e.key, "owner[0].key");
        assert!(e.to_string().contains("r.toml"), "{e}");
    }

    #[test]
    fn attestation_table_loads_and_errors_are_precise() {
        use shared::keys::{Algorithm, SoftwareKey};
        let dir = tempfile::tempdir().unwrap();
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let ca = pki::create_ca("CN=TPM CA", &key, std::time::Duration::from_secs(3600), None).unwrap();
        write(dir.path(), "tpm-ca.pem", &pki::cert_to_pem(&ca).unwrap());
        let load = |name: &str, table: &str| {
            let text = format!("trust_domain = \"td\"\n[attestation]\n{table}");
            AgentPolicy::load(&write(dir.path(), name, &text))
        };
        let sixteen = "ab".repeat(32);
        let p = load(
            "ok.toml",
            &format!("ak_anchors = \"tpm-ca.pem\"\nrequire_quote = true\n[attestation.pcrs]\n\"16\" = \"{sixteen}\"\n"),
        )
        .unwrap();
        let a = p.attestation.expect("attestation loaded");
        assert_eq!(a.anchors, vec![ca]);
        assert!(a.require_quote);
        assert_eq!(a.policy.pcrs, BTreeMap::from([(16u8, vec![0xab; 32])]));
        // Without the table, nothing is appraised.
        let p = write(dir.path(), "none.toml", "trust_domain = \"td\"\n");
        assert!(AgentPolicy::load(&p).unwrap().attestation.is_none());

        let cases = [
            ("ak_anchors = \"missing.pem\"\n", "attestation.ak_anchors", "missing.pem"),
            ("ak_anchors = \"ok.toml\"\n", "attestation.ak_anchors", "no CERTIFICATE"),
            (
                "ak_anchors = \"tpm-ca.pem\"\n[attestation.pcrs]\n\"24\" = \"00\"\n",
                "attestation.pcrs.24",
                "from 0 to 23",
            ),
            (
                "ak_anchors = \"tpm-ca.pem\"\n[attestation.pcrs]\n\"x\" = \"00\"\n",
                "attestation.pcrs.x",
                "from 0 to 23",
            ),
            (
                "ak_anchors = \"tpm-ca.pem\"\n[attestation.pcrs]\n\"7\" = \"zz\"\n",
                "attestation.pcrs.7",
                "not hex",
            ),
            (
                "ak_anchors = \"tpm-ca.pem\"\n[attestation.pcrs]\n\"7\" = \"0000\"\n",
                "attestation.pcrs.7",
                "this is 2 bytes",
            ),
        ];
        for (i, (table, key, reason)) in cases.iter().enumerate() {
            let e = load(&format!("bad{i}.toml"), table).unwrap_err();
            assert_eq!(e.key, *key, "{e}");
            assert!(e.reason.contains(reason), "{e}");
        }
        let e = load("unknown.toml", "ak_anchors = \"tpm-ca.pem\"\nrequire_qoute = true\n").unwrap_err();
        assert!(e.reason.contains("require_qoute"), "{e}");
    }
}
