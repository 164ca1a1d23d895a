//! `brski verify agent-cert|wit`: what a relying party (a RADIUS server, a service in another
//! organization) runs to accept an agent credential: path validation to the trust domain's CA
//! (or the WIT keys), the agent id's trust domain, and an owner binding re-verified offline
//! with owner keys the relying party itself trusts. Prints the agent id, owner and model;
//! exits 1 with the reason otherwise.

use super::input::{read_certs, read_input};
use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;
use shared::agent::wit::keys_from_jwks;
use shared::agent::{
    verify_agent_certificate, verify_wit_credential, AgentError, AgentIdentity, OwnerAnchor, OwnerAnchors,
    RelyingTrust,
};
use shared::pki;
use shared::Verified;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub(super) enum VerifyCommand {
    /// Verify an X.509 agent certificate (PEM: the certificate, then any intermediates).
    #[command(after_help = "Example:\n  brski verify agent-cert agent.pem --ca ca.pem \
                            --owner-anchor mailto:alice@example.com=alice.pub.pem")]
    AgentCert(VerifyArgs),
    /// Verify a WIT (compact JWT) against the trust domain's WIT keys.
    #[command(after_help = "Example:\n  brski verify wit agent.wit --bundle bundle.json")]
    Wit(VerifyArgs),
}

#[derive(Debug, Args)]
pub(super) struct VerifyArgs {
    /// The credential file (`-` for stdin).
    file: String,
    /// The trust domain's CA certificates (PEM; repeatable).
    #[arg(long)]
    ca: Vec<String>,
    /// The trust domain's WIT keys (JWKS JSON).
    #[arg(long)]
    jwks: Option<String>,
    /// The trust bundle JSON (`{"trust_domain", "ca_pem", "jwks", ...}`, as GET /v1/bundle
    /// returns it): CA certificates, WIT keys and trust domain in one file.
    #[arg(long)]
    bundle: Option<String>,
    /// An owner key this relying party trusts: OWNER_ID=PEM (public key or certificate);
    /// repeatable. Without one, a credential bound to an owner is refused.
    #[arg(long, value_name = "OWNER_ID=PEM")]
    owner_anchor: Vec<String>,
    /// The trust domain agent ids must belong to (default: the bundle's).
    #[arg(long)]
    trust_domain: Option<String>,
    /// Verify at this time (RFC 3339) instead of now.
    #[arg(long)]
    at: Option<String>,
}

/// Runs a verify command.
pub(super) fn run(cmd: VerifyCommand) -> anyhow::Result<ExitCode> {
    let (wit, a) = match cmd {
        VerifyCommand::AgentCert(a) => (false, a),
        VerifyCommand::Wit(a) => (true, a),
    };
    let trust = trust(&a)?;
    let result = if wit {
        let text = String::from_utf8(read_input(&a.file)?).context("the WIT is not text")?;
        verify_wit(text.trim(), &trust)
    } else {
        let chain = read_certs(&a.file)?;
        verify_agent_certificate(&chain, &trust)
    };
    match result {
        Ok(id) => {
            print_identity(&id);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("refused ({}): {e}", e.reason());
            Ok(ExitCode::FAILURE)
        }
    }
}

/// A WIT's owner approval names its key by the owner's `kid`, which a relying party given
/// keys on the command line does not know: each of the owner's anchors is tried under that
/// kid (the signature decides; the kid is only a hint).
fn verify_wit(text: &str, trust: &RelyingTrust) -> Result<Verified<AgentIdentity>, AgentError> {
    let first = verify_wit_credential(text, trust);
    let Some(kid) = wit_oa_kid(text) else { return first };
    if !matches!(&first, Err(AgentError::UnknownOwner(_))) {
        return first;
    }
    for anchor in trust.owner_anchors.iter() {
        let mut one = trust.clone();
        one.owner_anchors = OwnerAnchors::new(vec![OwnerAnchor { kid: kid.clone(), ..anchor.clone() }]);
        if let Ok(id) = verify_wit_credential(text, &one) {
            return Ok(id);
        }
    }
    first
}

/// The `kid` in the header of the OA inside a WIT's owner claim (unverified).
fn wit_oa_kid(wit: &str) -> Option<String> {
    let part = |jws: &str, i: usize| -> Option<Value> {
        let seg = jws.split('.').nth(i)?;
        serde_json::from_slice(&shared::b64::decode_url(seg).ok()?).ok()
    };
    let claims = part(wit, 1)?;
    let oa = claims.get(shared::agent::wit::OWNER_CLAIM)?.get("oa")?.as_str()?.to_string();
    part(&oa, 0)?.get("kid")?.as_str().map(str::to_string)
}

fn print_identity(id: &AgentIdentity) {
    println!("agent:    {}", id.agent_id);
    match &id.owner {
        Some(o) => {
            println!("owner:    {}", o.id);
            println!("model:    {}", o.model);
            println!("grant:    until {}", shared::rfc3339::format_unix(o.grant_not_after));
        }
        None => {
            println!("owner:    none");
            println!("model:    none");
        }
    }
    println!("expires:  {}", shared::rfc3339::format_unix(id.not_after));
    println!("key:      {} (RFC 7638 thumbprint)", id.key_thumbprint);
}

fn trust(a: &VerifyArgs) -> anyhow::Result<RelyingTrust> {
    let mut domain_anchors = Vec::new();
    let mut wit_keys = Vec::new();
    let mut trust_domain = a.trust_domain.clone();
    if let Some(b) = &a.bundle {
        let v: Value = serde_json::from_slice(&read_input(b)?).with_context(|| format!("{b}: not JSON"))?;
        if let Some(pem) = v.get("ca_pem").and_then(Value::as_str) {
            domain_anchors
                .extend(pki::certs_from_pem(pem.as_bytes()).with_context(|| format!("{b}: ca_pem"))?);
        }
        if let Some(j) = v.get("jwks") {
            wit_keys.extend(keys_from_jwks(j).map_err(|e| anyhow::anyhow!("{b}: jwks: {e}"))?);
        }
        if trust_domain.is_none() {
            trust_domain = v.get("trust_domain").and_then(Value::as_str).map(str::to_string);
        }
    }
    for c in &a.ca {
        domain_anchors.extend(read_certs(c)?);
    }
    if let Some(j) = &a.jwks {
        let v: Value = serde_json::from_slice(&read_input(j)?).with_context(|| format!("{j}: not JSON"))?;
        wit_keys.extend(keys_from_jwks(&v).map_err(|e| anyhow::anyhow!("{j}: {e}"))?);
    }
    let mut owner_anchors = OwnerAnchors::default();
    for (i, spec) in a.owner_anchor.iter().enumerate() {
        let (owner, path) = spec
            .split_once('=')
            .with_context(|| format!("--owner-anchor {spec}: expected OWNER_ID=PEM_FILE"))?;
        shared::agent::check_owner_id(owner).map_err(|e| anyhow::anyhow!("--owner-anchor: {e}"))?;
        owner_anchors.push(OwnerAnchor {
            owner: owner.to_string(),
            kid: format!("anchor-{}", i + 1),
            spki_der: public_key_of(path)?,
        });
    }
    let at = match &a.at {
        Some(t) => super::input::parse_time(t)?,
        None => time::OffsetDateTime::now_utc(),
    };
    Ok(RelyingTrust { domain_anchors, wit_keys, owner_anchors, trust_domain, at })
}

/// The DER SubjectPublicKeyInfo in a PEM file holding a `PUBLIC KEY` or a `CERTIFICATE`.
fn public_key_of(path: &str) -> anyhow::Result<Vec<u8>> {
    let pem = String::from_utf8(read_input(path)?).with_context(|| format!("{path}: not PEM"))?;
    let (label, der) =
        der::pem::decode_vec(pem.trim().as_bytes()).map_err(|e| anyhow::anyhow!("{path}: PEM: {e}"))?;
    match label {
        "PUBLIC KEY" => Ok(der),
        "CERTIFICATE" => Ok(pki::spki_der(&pki::cert_from_der(&der).with_context(|| path.to_string())?)),
        other => bail!("{path}: expected a PUBLIC KEY or CERTIFICATE, found {other}"),
    }
}
