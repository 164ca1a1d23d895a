//! Throw-away SoftHSM v2 tokens for tests of `pkcs11:` keys.
//!
//! Token administration (`C_InitToken`, `C_InitPIN`, key generation) runs through the same
//! process-wide module context as the signers ([`shared::keys::pkcs11::module`]): a second
//! `C_Initialize`/`C_Finalize` of the module would end every session the signers hold.

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, KeyType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::ObjectIdentifier;
use der::Encode;
use shared::keys::{pkcs11, Algorithm, DEFAULT_PKCS11_MODULE};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// A throw-away SoftHSM v2 token, for tests.
///
/// The first token made in a process creates a temporary token directory and points
/// `SOFTHSM2_CONF` at a config naming it (the variable is process-wide, so every token of the
/// process lives there; tell tokens apart by label). Each token gets user PIN
/// [`SoftHsmToken::PIN`] and SO PIN [`SoftHsmToken::SO_PIN`].
#[derive(Debug, Clone)]
pub struct SoftHsmToken {
    /// The token label.
    pub label: String,
    module_path: PathBuf,
    slot: Slot,
}

impl SoftHsmToken {
    /// The user PIN of every test token.
    pub const PIN: &'static str = "1234";
    /// The security officer PIN of every test token.
    pub const SO_PIN: &'static str = "5678";

    /// Whether SoftHSM is installed (its module at [`DEFAULT_PKCS11_MODULE`] and
    /// `softhsm2-util` on the PATH).
    pub fn available() -> bool {
        Path::new(DEFAULT_PKCS11_MODULE).exists()
            && std::env::var_os("PATH")
                .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join("softhsm2-util").is_file()))
    }

    /// Creates and initialises a new token labelled `label` (unique within the process).
    pub fn create(label: &str) -> Result<SoftHsmToken, String> {
        static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
        static INIT: Mutex<()> = Mutex::new(());
        DIR.get_or_init(|| {
            let dir = tempfile::Builder::new()
                .prefix("brski-softhsm")
                .tempdir()
                .map_err(|e| format!("temp dir: {e}"))?
                .keep();
            let tokens = dir.join("tokens");
            std::fs::create_dir(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
            let conf = dir.join("softhsm2.conf");
            let text = format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                tokens.display()
            );
            std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
            // SoftHSM reads this when the module is initialised, which happens below, after.
            std::env::set_var("SOFTHSM2_CONF", &conf);
            Ok(dir)
        })
        .clone()?;
        let _serial = INIT.lock().unwrap_or_else(|p| p.into_inner());
        let module_path = PathBuf::from(DEFAULT_PKCS11_MODULE);
        let ctx = pkcs11::module(&module_path)?;
        let slots = ctx.get_slots_with_token().map_err(|e| format!("listing slots: {e}"))?;
        let mut free = None;
        for slot in slots {
            let info = ctx.get_token_info(slot).map_err(|e| format!("token info: {e}"))?;
            if info.token_initialized() && info.label().trim_end() == label {
                return Err(format!("a token labelled {label} already exists"));
            }
            if !info.token_initialized() && free.is_none() {
                free = Some(slot);
            }
        }
        let slot = free.ok_or("SoftHSM offers no free slot")?;
        let so_pin = AuthPin::new(Self::SO_PIN.into());
        ctx.init_token(slot, &so_pin, label).map_err(|e| format!("C_InitToken: {e}"))?;
        let session = ctx.open_rw_session(slot).map_err(|e| format!("opening a session: {e}"))?;
        session.login(UserType::So, Some(&so_pin)).map_err(|e| format!("SO login: {e}"))?;
        session.init_pin(&AuthPin::new(Self::PIN.into())).map_err(|e| format!("C_InitPIN: {e}"))?;
        session.logout().map_err(|e| format!("logout: {e}"))?;
        Ok(SoftHsmToken { label: label.to_string(), module_path, slot })
    }

    /// Generates a key pair labelled `object` (CKA_ID = the label's bytes) in the token and
    /// returns its `pkcs11:` URI (with `pin-value`). Ed25519 needs a SoftHSM built with EdDSA.
    pub fn generate(&self, object: &str, alg: Algorithm) -> Result<String, String> {
        let ctx = pkcs11::module(&self.module_path)?;
        let session = ctx.open_rw_session(self.slot).map_err(|e| format!("opening a session: {e}"))?;
        match session.login(UserType::User, Some(&AuthPin::new(Self::PIN.into()))) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(format!("login: {e}")),
        }
        let curve = match alg {
            Algorithm::Es256 => SECP256R1,
            Algorithm::Es384 => SECP384R1,
            Algorithm::EdDsa => ED25519,
        };
        let params = curve.to_der().map_err(|e| e.to_string())?;
        let (mechanism, key_type) = match alg {
            Algorithm::EdDsa => (Mechanism::EccEdwardsKeyPairGen, KeyType::EC_EDWARDS),
            _ => (Mechanism::EccKeyPairGen, KeyType::EC),
        };
        let common = |class| {
            vec![
                Attribute::Class(class),
                Attribute::KeyType(key_type),
                Attribute::Token(true),
                Attribute::Label(object.as_bytes().to_vec()),
                Attribute::Id(object.as_bytes().to_vec()),
            ]
        };
        let mut public = common(ObjectClass::PUBLIC_KEY);
        public.extend([Attribute::EcParams(params), Attribute::Verify(true)]);
        let mut private = common(ObjectClass::PRIVATE_KEY);
        private.extend([
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
        ]);
        session
            .generate_key_pair(&mechanism, &public, &private)
            .map_err(|e| format!("C_GenerateKeyPair: {e}"))?;
        Ok(self.uri(object))
    }

    /// The `pkcs11:` URI of key `object` in this token, with `pin-value`.
    pub fn uri(&self, object: &str) -> String {
        format!(
            "pkcs11:token={};object={object};type=private?module-path={}&pin-value={}",
            self.label,
            self.module_path.display(),
            Self::PIN
        )
    }
}
