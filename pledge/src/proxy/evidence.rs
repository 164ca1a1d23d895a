//! The evidence the proxy attaches to a forwarded request: an EAT signed with the LDevID key
//! (LDevID chain in `x5chain`) whose `eat_nonce` is `[server nonce, acr_hash]` as raw bytes
//! and whose submodule, keyed by the requested agent id, says what the kernel told the proxy
//! about the caller (uid, pid, executable path and SHA-256). Wrapped in a CMW collection, with a
//! TPM quote bound to the same request as a second item when the device has an attestation key.

use super::attest::Attestation;
use super::peer::{Executable, Peer};
use super::Identity;
use serde_json::Value;
use shared::agent::evidence::{cmw_collection, sign_eat, AgentSubmodule, EvidenceClaims, EAT_PROFILE};
use shared::agent::AgentError;

/// What the proxy knows about the caller of one request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// Kernel credentials of the connection.
    pub peer: Peer,
    /// The caller's executable, when the proxy could read it.
    pub exe: Option<Executable>,
}

/// Builds the EAT claims for one request.
pub(crate) fn claims(
    identity: &Identity,
    server_nonce: &[u8],
    acr_hash: &[u8],
    agent_id: &str,
    caller: &Caller,
    now: i64,
) -> EvidenceClaims {
    EvidenceClaims {
        nonces: vec![server_nonce.to_vec(), acr_hash.to_vec()],
        iat: now,
        ueid: identity.ueid.clone(),
        oemboot: None,
        dbgstat: None,
        profile: EAT_PROFILE.to_string(),
        submods: vec![AgentSubmodule {
            agent_id: agent_id.to_string(),
            swname: caller.exe.as_ref().map(|e| e.path.clone()),
            exe_sha256: caller.exe.as_ref().map(|e| e.sha256.to_vec()),
            uid: caller.peer.uid,
            pid: caller.peer.pid,
            ..Default::default()
        }],
    }
}

/// Signs the EAT with the LDevID key and wraps it in a CMW collection (JSON form), with a TPM
/// quote bound to this request when `attestation` is given.
pub(crate) fn build(
    identity: &Identity,
    server_nonce: &[u8],
    acr_hash: &[u8],
    agent_id: &str,
    caller: &Caller,
    attestation: Option<&Attestation>,
    now: i64,
) -> Result<Value, AgentError> {
    let c = claims(identity, server_nonce, acr_hash, agent_id, caller, now);
    let eat = sign_eat(&c, identity.key.as_ref(), &identity.chain)?;
    let quote = attestation.map(|a| a.quote(server_nonce, acr_hash)).transpose()?;
    Ok(cmw_collection(&eat, quote.as_ref().map(|(media, cbor)| (*media, cbor.as_slice()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::agent::evidence::{eat_from_cmw, verify_eat};
    use shared::keys::{Algorithm, Signer, SoftwareKey};
    use shared::pki::{create_ca, parse_name, CertificateAuthority, Profile};
    use std::sync::Arc;
    use std::time::Duration;

    /// A domain CA and an LDevID issued by it, as an identity.
    pub(crate) fn identity() -> Identity {
        let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let ca_cert = create_ca("CN=test domain CA", &ca_key, Duration::from_secs(3600), None).unwrap();
        let ca = CertificateAuthority::new(ca_cert.clone(), Box::new(ca_key)).unwrap();
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&key.public_key_der()).unwrap();
        let leaf = ca
            .issue_for_key(
                spki,
                parse_name("CN=proxy,serialNumber=SN-7").unwrap(),
                &[],
                &Profile::end_entity(Duration::from_secs(3600)),
            )
            .unwrap();
        Identity::new(vec![leaf], Arc::new(key), vec![ca_cert]).unwrap()
    }

    #[test]
    fn evidence_is_signed_by_the_ldevid_and_binds_nonce_acr_and_caller() {
        let id = identity();
        let caller = Caller {
            peer: Peer { uid: Some(1000), gid: Some(1000), pid: Some(4242) },
            exe: Some(Executable { path: "/usr/bin/agent".into(), sha256: [7; 32] }),
        };
        let cmw = build(&id, &[1; 32], &[2; 32], "wimse://td/agent/a", &caller, None, 1_700_000_000).unwrap();
        let back = verify_eat(&eat_from_cmw(&cmw).unwrap(), id.leaf()).unwrap();
        assert!(back.binds(&[1; 32], &[2; 32]));
        assert_eq!(back.profile, EAT_PROFILE);
        assert_eq!(back.ueid.len(), 33);
        assert_eq!(back.ueid[0], 1);
        let sub = &back.submods[0];
        assert_eq!(sub.agent_id, "wimse://td/agent/a");
        assert_eq!((sub.uid, sub.pid), (Some(1000), Some(4242)));
        assert_eq!(sub.exe_sha256.as_deref(), Some(&[7u8; 32][..]));
        assert_eq!(sub.swname.as_deref(), Some("/usr/bin/agent"));
        // Another proxy's certificate does not verify it.
        let other = identity();
        assert!(verify_eat(&eat_from_cmw(&cmw).unwrap(), other.leaf()).is_err());
    }
}
