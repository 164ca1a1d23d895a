//! `brski demo`: the foundation flow in one process, printed step by step.
//!
//! Manufacturer, domain and pledge each get real keys and certificates; the pledge signs a
//! voucher-request, the registrar verifies and wraps it, the MASA verifies that and signs
//! vouchers in CMS, JWS and COSE, and the pledge verifies each and checks the registrar pin.
//! Everything issued is recorded in a SQLite store with an audit hash chain. The files it
//! writes let you re-run the checks with `brski voucher verify`.

use anyhow::Context;
use clap::Args;
use serde_json::json;
use shared::keys::{generate_key_file, Algorithm, Signer, SoftwareKey};
use shared::pki::{self, CertificateAuthority, Profile};
use shared::signed::{Format, Trust};
use shared::store::{AuditEvent, SqliteStore, Store};
use shared::voucher::{self as v, Assertion, Expectations, Kind, Nonce, Voucher};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use x509_cert::Certificate;

const YEAR: Duration = Duration::from_secs(365 * 86400);
/// id-kp-cmcRA: the registrar's certificate must carry it for the MASA (RFC 8995 §5.5).
const ID_KP_CMC_RA: const_oid::ObjectIdentifier =
    const_oid::ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.28");

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Directory for the demo's keys, certificates, vouchers and database (default: a new
    /// temporary directory, kept so you can inspect it).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Device serial number for the demo pledge.
    #[arg(long, default_value = "DEMO-0001")]
    serial: String,
}

/// The parties of the demo.
struct World {
    manufacturer: CertificateAuthority,
    masa_key: SoftwareKey,
    masa_cert: Certificate,
    idevid_key: SoftwareKey,
    idevid: Certificate,
    domain: CertificateAuthority,
    registrar_key: SoftwareKey,
    registrar_cert: Certificate,
}

pub fn run(a: DemoArgs) -> anyhow::Result<ExitCode> {
    let dir = match a.state {
        Some(d) => d,
        None => std::env::temp_dir().join(format!("brski-demo-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    if dir.join("idevid.key").exists() {
        anyhow::bail!("{} already holds a demo run; choose another --state or remove it", dir.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(demo(&dir, &a.serial))?;
    Ok(ExitCode::SUCCESS)
}

async fn demo(dir: &Path, serial: &str) -> anyhow::Result<()> {
    let store = SqliteStore::open(&dir.join("brski.db")).await?;
    println!("brski demo: state in {}\n", dir.display());
    let w = build_world(dir, serial)?;
    for (c, profile) in
        [(&w.masa_cert, "masa-signing"), (&w.idevid, "idevid"), (&w.registrar_cert, "registrar")]
    {
        store.record_certificate(&pki::issued_record(c, profile)?).await?;
    }
    audit(&store, "manufacturer", "idevid-minted", serial, json!({"masa-url": pki::masa_url(&w.idevid)}))
        .await?;

    println!("== Pledge -> registrar: voucher-request ==");
    let nonce = Nonce::from_bytes(&random_bytes::<16>()?);
    let pvr = pledge_request(&w, nonce.clone())?;
    println!("  pledge signed a voucher-request (CMS, {} bytes), nonce {}", pvr.len(), nonce.json_text());
    let rvr = registrar_wraps(&w, &pvr)?;
    println!("  registrar verified it to the manufacturer CA and wrapped it (RVR, {} bytes)", rvr.len());
    audit(&store, "registrar", "voucher-requested", serial, json!({"nonce": nonce.json_text()})).await?;

    println!("\n== MASA: verify the request, sign vouchers ==");
    let request = masa_checks(&w, &rvr)?;
    for format in [Format::Cms, Format::Jws, Format::Cose] {
        let voucher = masa_signs(&w, &request, format)?;
        let path = dir.join(format!("voucher.{}", format.file_extension()));
        std::fs::write(&path, voucher.bytes())?;
        store.record_voucher(&voucher_record(&request, format, voucher.bytes())).await?;
        println!("  {format:<4} voucher: {} bytes -> {}", voucher.bytes().len(), path.display());
        pledge_accepts(&w, voucher.bytes(), &nonce)?;
    }
    audit(&store, "masa", "vouchers-issued", serial, json!({"formats": ["cms", "jws", "cose"]})).await?;

    println!("\n== Pledge refuses what it must ==");
    let replay =
        masa_signs(&w, &with_nonce(&request, Nonce::from_bytes(&random_bytes::<16>()?)), Format::Cms)?;
    match pledge_accepts(&w, replay.bytes(), &nonce) {
        Err(e) => println!("  voucher for another request: refused ({e})"),
        Ok(()) => anyhow::bail!("a voucher with another nonce was accepted"),
    }

    let rows = store.verify_audit_chain().await?;
    println!(
        "\n== Store ==\n  {} issued certificates and {rows} audit events in {} (hash chain verified)",
        store.list_certificates(100, 0).await?.len(),
        dir.join("brski.db").display()
    );
    println!(
        "\nTry: brski voucher verify {} --trust {} --nonce '{}' --serial {serial}",
        dir.join("voucher.vcj").display(),
        dir.join("manufacturer-ca.pem").display(),
        nonce.json_text()
    );
    Ok(())
}

fn build_world(dir: &Path, serial: &str) -> anyhow::Result<World> {
    println!("== Manufacturer ==");
    let ca_key = SoftwareKey::generate(Algorithm::Es384)?;
    let manufacturer = CertificateAuthority::new(
        pki::create_ca("CN=Demo Manufacturer CA,O=brski demo", &ca_key, YEAR * 20, Some(0))?,
        Box::new(ca_key),
    )?;
    write_pem(dir, "manufacturer-ca.pem", manufacturer.certificate())?;
    println!("  manufacturer CA (P-384): {}", manufacturer.certificate().tbs_certificate().subject());
    let (masa_key, masa_cert) =
        issue(&manufacturer, "CN=Demo MASA voucher signer", &Profile::end_entity(YEAR * 2))?;
    println!("  MASA voucher-signing key (P-256) and certificate");
    let idevid_key = generate_key_file(&dir.join("idevid.key"), Algorithm::Es256)?;
    let mut profile = Profile::end_entity(YEAR * 20);
    profile.extra_extensions.push(pki::masa_url_extension("https://masa.demo.invalid/.well-known/brski")?);
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&idevid_key.public_key_der())?;
    let idevid =
        manufacturer.issue_for_key(spki, pki::name_with_serial("CN=Demo Widget", serial)?, &[], &profile)?;
    write_pem(dir, "idevid.pem", &idevid)?;
    println!(
        "  IDevID for serial {serial}, MASA URL {}, key in idevid.key (0600)",
        pki::masa_url(&idevid).unwrap_or_default()
    );
    println!("\n== Domain ==");
    let dkey = SoftwareKey::generate(Algorithm::Es256)?;
    let domain = CertificateAuthority::new(
        pki::create_ca("CN=Demo Campus CA,O=brski demo", &dkey, YEAR * 10, None)?,
        Box::new(dkey),
    )?;
    let mut rprofile = Profile::end_entity(YEAR);
    rprofile.extended_key_usage = vec![ID_KP_CMC_RA, const_oid::db::rfc5280::ID_KP_SERVER_AUTH];
    let (registrar_key, registrar_cert) = issue(&domain, "CN=registrar.demo.invalid", &rprofile)?;
    write_pem(dir, "domain-ca.pem", domain.certificate())?;
    write_pem(dir, "registrar.pem", &registrar_cert)?;
    println!("  domain CA and registrar certificate (cmcRA + serverAuth)\n");
    Ok(World { manufacturer, masa_key, masa_cert, idevid_key, idevid, domain, registrar_key, registrar_cert })
}

fn issue(
    ca: &CertificateAuthority,
    subject: &str,
    profile: &Profile,
) -> anyhow::Result<(SoftwareKey, Certificate)> {
    let key = SoftwareKey::generate(Algorithm::Es256)?;
    let csr = pki::Csr::verify_der(&pki::build_csr(&pki::parse_name(subject)?, &[], &key)?)?;
    Ok((key, ca.issue(&csr, profile)?))
}

fn pledge_request(w: &World, nonce: Nonce) -> anyhow::Result<Vec<u8>> {
    let mut pvr = Voucher::new(Kind::Request);
    pvr.assertion = Some(Assertion::Proximity);
    pvr.serial_number = pki::serial_number(&w.idevid);
    pvr.nonce = Some(nonce);
    pvr.created_on = Some(now());
    pvr.proximity_registrar_cert = Some(pki::cert_to_der(&w.registrar_cert)?);
    Ok(v::sign_voucher(&pvr, Format::Cms, &w.idevid_key, std::slice::from_ref(&w.idevid))?.bytes().to_vec())
}

fn registrar_wraps(w: &World, pvr_bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let pvr = v::SignedVoucher::parse(pvr_bytes)?
        .verify(&Trust::now(vec![w.manufacturer.certificate().clone()]))?;
    v::check_request(&pvr)?;
    let idevid = pvr.signer().context("PVR has no signer certificate")?;
    let mut rvr = Voucher::new(Kind::Request);
    rvr.assertion = pvr.assertion;
    rvr.serial_number = pki::serial_number(idevid);
    rvr.nonce = pvr.nonce.clone();
    rvr.created_on = Some(now());
    rvr.idevid_issuer = Some(pki::idevid_issuer(idevid));
    rvr.prior_signed_voucher_request = Some(pvr_bytes.to_vec());
    Ok(v::sign_voucher(
        &rvr,
        Format::Cms,
        &w.registrar_key,
        &[w.registrar_cert.clone(), w.domain.certificate().clone()],
    )?
    .bytes()
    .to_vec())
}

fn masa_checks(w: &World, rvr_bytes: &[u8]) -> anyhow::Result<Voucher> {
    // The MASA's ownership record for this serial: the domain CA.
    let rvr =
        v::SignedVoucher::parse(rvr_bytes)?.verify(&Trust::now(vec![w.domain.certificate().clone()]))?;
    let prior = rvr.prior_signed_voucher_request.as_deref().context("RVR without the pledge's request")?;
    let pvr =
        v::SignedVoucher::parse(prior)?.verify(&Trust::now(vec![w.manufacturer.certificate().clone()]))?;
    anyhow::ensure!(pvr.serial_number == rvr.serial_number, "serial-number differs between PVR and RVR");
    anyhow::ensure!(pvr.nonce == rvr.nonce, "nonce differs between PVR and RVR");
    println!("  RVR signer chains to the owner's domain CA; the prior PVR verifies to the manufacturer CA");
    let mut voucher = Voucher::new(Kind::Voucher);
    voucher.assertion = Some(Assertion::Logged);
    voucher.serial_number = rvr.serial_number.clone();
    voucher.nonce = rvr.nonce.clone();
    voucher.created_on = Some(now());
    voucher.pinned_domain_cert = Some(pki::cert_to_der(w.domain.certificate())?);
    Ok(voucher)
}

fn masa_signs(w: &World, voucher: &Voucher, format: Format) -> anyhow::Result<v::SignedVoucher> {
    Ok(v::sign_voucher(voucher, format, &w.masa_key, std::slice::from_ref(&w.masa_cert))?)
}

fn with_nonce(voucher: &Voucher, nonce: Nonce) -> Voucher {
    Voucher { nonce: Some(nonce), ..voucher.clone() }
}

fn pledge_accepts(w: &World, bytes: &[u8], nonce: &Nonce) -> anyhow::Result<()> {
    let verified =
        v::SignedVoucher::parse(bytes)?.verify(&Trust::now(vec![w.manufacturer.certificate().clone()]))?;
    let expect = Expectations {
        nonce: Some(nonce.clone()),
        serial_number: pki::serial_number(&w.idevid),
        idevid_issuer: Some(pki::idevid_issuer(&w.idevid)),
        now: Some(now()),
        require_nonce: true,
        ..Default::default()
    };
    v::check_voucher(&verified, &expect)?;
    v::check_registrar_pin(&verified, std::slice::from_ref(&w.registrar_cert), now())?;
    println!("       pledge: signature -> manufacturer CA, nonce, serial, registrar pin: OK");
    Ok(())
}

fn voucher_record(v: &Voucher, format: Format, bytes: &[u8]) -> shared::store::VoucherRecord {
    shared::store::VoucherRecord {
        serial_number: v.serial_number.clone().unwrap_or_default(),
        domain: "CN=Demo Campus CA,O=brski demo".into(),
        assertion: v.assertion.map(Assertion::name).unwrap_or_default().into(),
        nonce: v.nonce.as_ref().and_then(Nonce::decoded),
        format: format.to_string(),
        bytes: bytes.to_vec(),
        created_at: now(),
    }
}

async fn audit(
    store: &SqliteStore,
    actor: &str,
    action: &str,
    subject: &str,
    detail: serde_json::Value,
) -> anyhow::Result<()> {
    let event =
        AuditEvent { actor: actor.into(), action: action.into(), subject: subject.into(), detail, at: now() };
    store.append_audit(&event).await?;
    Ok(())
}

fn write_pem(dir: &Path, name: &str, cert: &Certificate) -> anyhow::Result<()> {
    std::fs::write(dir.join(name), pki::cert_to_pem(cert)?)?;
    Ok(())
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random source: {e}"))?;
    Ok(b)
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap_or_else(|_| time::OffsetDateTime::now_utc())
}
