//! Creating, reading and removing persistent ECDSA P-256 keys in a TPM: device keys (IDevID,
//! LDevID: unrestricted signing keys) and attestation keys (restricted signing keys, which sign
//! only what the TPM produced, such as quotes).

use super::{key_error, with_tpm};
use crate::keys::KeyError;
use p256::pkcs8::EncodePublicKey;
use std::convert::TryFrom;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{ObjectHandle, PersistentTpmHandle, TpmHandle};
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::dynamic_handles::Persistent;
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::{Hierarchy, Provision};
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    CapabilityData, EccParameter, EccPoint, EccScheme, HashScheme, Public, PublicBuilder,
    PublicEccParametersBuilder,
};
use tss_esapi::Context;

/// What a TPM key may sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// Unrestricted: signs any digest (TLS, voucher-requests, CSRs, evidence).
    Signing,
    /// Restricted: signs only TPM-generated structures (quotes, certifications).
    Attestation,
}

/// A TPM key's public half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpmKeyInfo {
    /// DER SubjectPublicKeyInfo (P-256).
    pub spki: Vec<u8>,
    /// What it may sign.
    pub kind: KeyKind,
}

/// Creates a new ECDSA P-256 key of `kind` inside the TPM and makes it persistent at `handle`.
/// An existing key there is kept (error) unless `replace`, in which case it is evicted first.
/// The key is a primary key of the owner hierarchy with a random `unique` field, so each call
/// yields a different key; `fixedTPM` and `sensitiveDataOrigin` mean it was born in this TPM
/// and never leaves it.
pub fn create_key(tcti: &str, handle: u32, kind: KeyKind, replace: bool) -> Result<TpmKeyInfo, KeyError> {
    let template = template(kind).map_err(|e| key_error(handle, tcti, format!("key template: {e}")))?;
    let exists = with_tpm(tcti, "looking up the handle", |ctx| Ok(persistent(ctx, handle).is_some()))
        .map_err(|e| key_error(handle, tcti, e))?;
    if exists && !replace {
        return Err(key_error(
            handle,
            tcti,
            "a key already exists at this handle (evict it first, or replace it)",
        ));
    }
    let public = with_tpm(tcti, "creating the key", |ctx| {
        if let Some(existing) = persistent(ctx, handle) {
            evict(ctx, existing, handle)?;
        }
        let created = ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.create_primary(Hierarchy::Owner, template, None, None, None, None)
        })?;
        let transient = ObjectHandle::from(created.key_handle);
        let persisted = ctx.execute_with_session(Some(AuthSession::Password), |c| {
            c.evict_control(
                Provision::Owner,
                transient,
                Persistent::Persistent(PersistentTpmHandle::new(handle)?),
            )
        });
        ctx.flush_context(transient)?;
        persisted?;
        Ok(created.out_public)
    })
    .map_err(|e| key_error(handle, tcti, e))?;
    info_of(&public).map_err(|e| key_error(handle, tcti, e))
}

/// The public half and kind of the persistent key at `handle`.
pub fn read_key(tcti: &str, handle: u32) -> Result<TpmKeyInfo, KeyError> {
    let public = with_tpm(tcti, "reading the key", |ctx| match persistent(ctx, handle) {
        Some(object) => ctx.read_public(object.into()).map(|(public, _, _)| Some(public)),
        None => Ok(None),
    })
    .map_err(|e| key_error(handle, tcti, e))?
    .ok_or_else(|| key_error(handle, tcti, "no key at this handle"))?;
    info_of(&public).map_err(|e| key_error(handle, tcti, e))
}

/// Removes the persistent key at `handle`; `Ok(false)` when there was none.
pub fn evict_key(tcti: &str, handle: u32) -> Result<bool, KeyError> {
    with_tpm(tcti, "evicting the key", |ctx| match persistent(ctx, handle) {
        Some(object) => evict(ctx, object, handle).map(|_| true),
        None => Ok(false),
    })
    .map_err(|e| key_error(handle, tcti, e))
}

/// The persistent object at `handle`, if there is one (looked up in the TPM's handle list
/// first, so an empty handle is not an error the TSS logs).
fn persistent(ctx: &mut Context, handle: u32) -> Option<ObjectHandle> {
    let (data, _) = ctx.get_capability(CapabilityType::Handles, handle, 1).ok()?;
    let CapabilityData::Handles(list) = data else { return None };
    let present = list.into_inner().into_iter().any(|h| u32::from(h) == handle);
    let tpm_handle = TpmHandle::Persistent(PersistentTpmHandle::new(handle).ok()?);
    present.then(|| ctx.execute_without_session(|c| c.tr_from_tpm_public(tpm_handle)).ok()).flatten()
}

fn evict(ctx: &mut Context, object: ObjectHandle, handle: u32) -> tss_esapi::Result<()> {
    let persistent = Persistent::Persistent(PersistentTpmHandle::new(handle)?);
    ctx.execute_with_session(Some(AuthSession::Password), |c| {
        c.evict_control(Provision::Owner, object, persistent)
    })
    .map(|_| ())
}

fn template(kind: KeyKind) -> tss_esapi::Result<Public> {
    let restricted = kind == KeyKind::Attestation;
    let attributes = ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_restricted(restricted)
        .build()?;
    let scheme = EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256));
    let parameters = PublicEccParametersBuilder::new_unrestricted_signing_key(scheme, EccCurve::NistP256)
        .with_restricted(restricted)
        .build()?;
    let random = |n| {
        let mut b = vec![0u8; n];
        getrandom::fill(&mut b)
            .map(|_| b)
            .map_err(|_| tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InternalError))
    };
    let unique = EccPoint::new(EccParameter::try_from(random(32)?)?, EccParameter::try_from(random(32)?)?);
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(unique)
        .build()
}

fn info_of(public: &Public) -> Result<TpmKeyInfo, String> {
    let Public::Ecc { object_attributes, parameters, unique, .. } = public else {
        return Err("not an ECC key: brski uses ECDSA P-256 TPM keys".into());
    };
    if parameters.ecc_curve() != EccCurve::NistP256 {
        return Err("not a P-256 key: brski uses ECDSA P-256 TPM keys".into());
    }
    if !object_attributes.sign_encrypt() || object_attributes.decrypt() {
        return Err("not a signing key".into());
    }
    let pad = |v: &[u8]| -> Result<Vec<u8>, String> {
        if v.len() > 32 {
            return Err("bad P-256 point".into());
        }
        let mut out = vec![0u8; 32 - v.len()];
        out.extend_from_slice(v);
        Ok(out)
    };
    let mut point = vec![0x04];
    point.extend(pad(unique.x().value())?);
    point.extend(pad(unique.y().value())?);
    let key = p256::PublicKey::from_sec1_bytes(&point).map_err(|e| format!("bad P-256 point: {e}"))?;
    let spki = key.to_public_key_der().map_err(|e| format!("encoding the public key: {e}"))?.into_vec();
    let kind = if object_attributes.restricted() { KeyKind::Attestation } else { KeyKind::Signing };
    Ok(TpmKeyInfo { spki, kind })
}
