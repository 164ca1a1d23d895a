//! PKCS#11 keys (feature `pkcs11`): a [`Signer`] over a private key object in a token, named by
//! a `pkcs11:` URI (RFC 7512, see [`Pkcs11Uri`]).
//!
//! The module (`module-path`, default SoftHSM's) is loaded with `dlopen` at run time, so
//! building with this feature links no system library. Each module is initialised once per
//! process and shared by every key that names it. A [`Pkcs11Signer`] keeps one logged-in
//! session behind a mutex and opens a fresh one if the token drops it.
//!
//! ECDSA keys (P-256, P-384) sign with `CKM_ECDSA` over a SHA-256 / SHA-384 digest computed
//! here; Ed25519 keys sign with `CKM_EDDSA`. Signatures come back raw (`r || s`, 64 bytes).
//!
//! Throw-away SoftHSM tokens for tests are the dev-only `testkit` crate's (`testkit::softhsm`).

use super::{Algorithm, KeyError, Pkcs11Uri, Signer};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use der::asn1::{ObjectIdentifier, OctetString};
use der::Decode;
use sha2::Digest;
use spki::EncodePublicKey;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

const SECP256R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");

/// The process's one context for the PKCS#11 module at `path`, initialised on first use
/// (`C_Initialize` may only run once per module, and `C_Finalize` would end every session), so
/// token administration (e.g. the test kit's SoftHSM tokens) must share it with the signers.
pub fn module(path: &Path) -> Result<Pkcs11, String> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut modules = MODULES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(m) = modules.get(path) {
        return Ok(m.clone());
    }
    let m = Pkcs11::new(path).map_err(|e| format!("cannot load PKCS#11 module {}: {e}", path.display()))?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(format!("C_Initialize of {}: {e}", path.display())),
    }
    modules.insert(path.to_path_buf(), m.clone());
    Ok(m)
}

/// A private key in a PKCS#11 token, as a [`Signer`].
pub struct Pkcs11Signer {
    /// The URI with the PIN redacted, for error messages.
    shown: String,
    ctx: Pkcs11,
    slot: Slot,
    pin: Option<AuthPin>,
    key: ObjectHandle,
    algorithm: Algorithm,
    spki: Vec<u8>,
    session: Mutex<Option<Session>>,
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pkcs11Signer({}, {})", self.shown, self.algorithm)
    }
}

impl Pkcs11Signer {
    /// Opens the key `uri` names: loads the module, finds the token, logs in with the PIN and
    /// finds the private key (and its public half, for [`Signer::public_key_der`]).
    pub fn open(uri: &Pkcs11Uri) -> Result<Self, KeyError> {
        let shown = uri.to_string();
        let err = |detail: String| KeyError::Pkcs11 { uri: shown.clone(), detail };
        let ctx = module(&uri.module_path).map_err(err)?;
        let slot = find_slot(&ctx, uri).map_err(err)?;
        let pin = match &uri.pin {
            Some(p) => Some(AuthPin::new(p.read()?.into())),
            None => None,
        };
        let session = open_session(&ctx, slot, pin.as_ref()).map_err(err)?;
        let key = find_key(&session, uri, ObjectClass::PRIVATE_KEY)
            .map_err(err)?
            .ok_or_else(|| err("no private key object matches (check object= / id=)".into()))?;
        let (algorithm, spki) = read_public_key(&session, uri, key).map_err(err)?;
        Ok(Pkcs11Signer {
            shown: shown.clone(),
            ctx,
            slot,
            pin,
            key,
            algorithm,
            spki,
            session: Mutex::new(Some(session)),
        })
    }

    fn sign_once(&self, session: &Session, data: &[u8]) -> Result<Vec<u8>, CkError> {
        match self.algorithm {
            Algorithm::Es256 => session.sign(&Mechanism::Ecdsa, self.key, &sha2::Sha256::digest(data)),
            Algorithm::Es384 => session.sign(&Mechanism::Ecdsa, self.key, &sha2::Sha384::digest(data)),
            Algorithm::EdDsa => {
                session.sign(&Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)), self.key, data)
            }
        }
    }
}

impl Signer for Pkcs11Signer {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    fn public_key_der(&self) -> Vec<u8> {
        self.spki.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        let err = |e: String| KeyError::Sign(format!("PKCS#11 key {}: {e}", self.shown));
        let mut guard = self.session.lock().unwrap_or_else(|p| p.into_inner());
        // One retry with a new session if the token closed ours (token re-inserted, logout).
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some(open_session(&self.ctx, self.slot, self.pin.as_ref()).map_err(err)?);
            }
            let Some(session) = guard.as_ref() else { continue };
            match self.sign_once(session, message) {
                Ok(sig) => {
                    let want = match self.algorithm {
                        Algorithm::Es256 | Algorithm::EdDsa => 64,
                        Algorithm::Es384 => 96,
                    };
                    if sig.len() != want {
                        return Err(err(format!("token returned a {}-byte signature", sig.len())));
                    }
                    return Ok(sig);
                }
                Err(CkError::Pkcs11(
                    RvError::SessionHandleInvalid
                    | RvError::SessionClosed
                    | RvError::UserNotLoggedIn
                    | RvError::DeviceRemoved
                    | RvError::TokenNotPresent,
                    _,
                )) if attempt == 0 => *guard = None,
                Err(e) => return Err(err(e.to_string())),
            }
        }
        Err(err("the token keeps closing the session".into()))
    }
}

fn find_slot(ctx: &Pkcs11, uri: &Pkcs11Uri) -> Result<Slot, String> {
    let slots = ctx.get_slots_with_initialized_token().map_err(|e| format!("listing slots: {e}"))?;
    let mut found = Vec::new();
    for slot in slots {
        if uri.slot_id.is_some_and(|id| id != slot.id()) {
            continue;
        }
        let info = ctx.get_token_info(slot).map_err(|e| format!("token info: {e}"))?;
        if uri.token.as_deref().is_some_and(|t| t != info.label().trim_end())
            || uri.serial.as_deref().is_some_and(|s| s != info.serial_number().trim_end())
        {
            continue;
        }
        found.push(slot);
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err("no initialised token matches (check token= / serial= / slot-id=)".into()),
        _ => Err(format!("{} tokens match; name one with token= or serial=", found.len())),
    }
}

fn open_session(ctx: &Pkcs11, slot: Slot, pin: Option<&AuthPin>) -> Result<Session, String> {
    let session = ctx.open_ro_session(slot).map_err(|e| format!("opening a session: {e}"))?;
    match pin {
        Some(pin) => match session.login(UserType::User, Some(pin)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => return Err("login refused: wrong PIN".into()),
            Err(e) => return Err(format!("login: {e}")),
        },
        None => {
            let info = ctx.get_token_info(slot).map_err(|e| format!("token info: {e}"))?;
            if info.login_required() {
                return Err("the token needs a PIN: add pin-value= or pin-source=file:<path>".into());
            }
        }
    }
    Ok(session)
}

fn find_key(session: &Session, uri: &Pkcs11Uri, class: ObjectClass) -> Result<Option<ObjectHandle>, String> {
    let mut template = vec![Attribute::Class(class)];
    if let Some(label) = &uri.object {
        template.push(Attribute::Label(label.as_bytes().to_vec()));
    }
    if let Some(id) = &uri.id {
        template.push(Attribute::Id(id.clone()));
    }
    let found = session.find_objects(&template).map_err(|e| format!("finding the key: {e}"))?;
    match found.as_slice() {
        [] => Ok(None),
        [key] => Ok(Some(*key)),
        _ => Err(format!("{} key objects match; name one with object= and id=", found.len())),
    }
}

/// The algorithm and DER SubjectPublicKeyInfo of a private key, from its public key object's
/// CKA_EC_PARAMS and CKA_EC_POINT.
fn read_public_key(
    session: &Session,
    uri: &Pkcs11Uri,
    private: ObjectHandle,
) -> Result<(Algorithm, Vec<u8>), String> {
    let key_type = session
        .get_attributes(private, &[AttributeType::KeyType])
        .map_err(|e| format!("reading the key type: {e}"))?;
    let key_type = match key_type.first() {
        Some(Attribute::KeyType(t)) => *t,
        _ => return Err("the key has no CKA_KEY_TYPE".into()),
    };
    if key_type != KeyType::EC && key_type != KeyType::EC_EDWARDS {
        return Err(format!("unsupported key type {key_type}: brski signs with P-256, P-384 or Ed25519"));
    }
    let public = find_key(session, uri, ObjectClass::PUBLIC_KEY)?
        .ok_or("no public key object with the same object= / id= (needed for the public key)")?;
    let attrs = session
        .get_attributes(public, &[AttributeType::EcParams, AttributeType::EcPoint])
        .map_err(|e| format!("reading the public key: {e}"))?;
    let (mut params, mut point) = (None, None);
    for a in attrs {
        match a {
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    let (params, point) = params.zip(point).ok_or("the public key lacks CKA_EC_PARAMS or CKA_EC_POINT")?;
    // CKA_EC_PARAMS is the curve OID (or, for Edwards curves, sometimes a PrintableString name).
    let curve = ObjectIdentifier::from_der(&params).ok();
    let edwards_name = params.ends_with(b"edwards25519");
    // CKA_EC_POINT is a DER OCTET STRING around the point; some modules return it bare.
    let unwrap = |raw_len: usize| -> Vec<u8> {
        if point.len() == raw_len {
            point.clone()
        } else {
            OctetString::from_der(&point).map(|o| o.as_bytes().to_vec()).unwrap_or_else(|_| point.clone())
        }
    };
    let bad = |e: &dyn std::fmt::Display| format!("the token's public key is not valid: {e}");
    match curve {
        Some(c) if c == SECP256R1 => {
            let pk = p256::PublicKey::from_sec1_bytes(&unwrap(65)).map_err(|e| bad(&e))?;
            Ok((Algorithm::Es256, pk.to_public_key_der().map_err(|e| bad(&e))?.into_vec()))
        }
        Some(c) if c == SECP384R1 => {
            let pk = p384::PublicKey::from_sec1_bytes(&unwrap(97)).map_err(|e| bad(&e))?;
            Ok((Algorithm::Es384, pk.to_public_key_der().map_err(|e| bad(&e))?.into_vec()))
        }
        Some(c) if c == ED25519 => ed25519_spki(&unwrap(32)),
        None if edwards_name => ed25519_spki(&unwrap(32)),
        Some(c) => Err(format!("unsupported curve {c}: brski signs with P-256, P-384 or Ed25519")),
        None => Err("unsupported CKA_EC_PARAMS (not a curve OID)".into()),
    }
}

fn ed25519_spki(point: &[u8]) -> Result<(Algorithm, Vec<u8>), String> {
    let bytes: [u8; 32] = point.try_into().map_err(|_| "an Ed25519 public key is 32 bytes".to_string())?;
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|e| format!("bad Ed25519 key: {e}"))?;
    let der = vk.to_public_key_der().map_err(|e| format!("encoding the public key: {e}"))?;
    Ok((Algorithm::EdDsa, der.into_vec()))
}
