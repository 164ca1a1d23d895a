//! The test lab: a MASA initialised in a temporary directory and served over real TLS on
//! loopback, one minted device owned by a domain, and builders for the pledge's and the
//! registrar's voucher-requests exactly as a registrar makes them.
#![allow(dead_code)]

use masa::{InitOptions, Masa, MasaConfig, MintedDevice, Owner};
use registrar::MasaClient;
use shared::keys::{Algorithm, Signer, SoftwareKey};
use shared::pki::{self, create_ca, CertificateAuthority, Profile, San};
use shared::signed::{Format, Trust};
use shared::voucher::{sign_voucher, Assertion, Kind, Nonce, SignedVoucher, Voucher};
use shared::Verified;
use std::sync::Arc;
use std::time::Duration;
use x509_cert::Certificate;

/// The device every lab mints and gives to its owner domain.
pub(crate) const SERIAL: &str = "SN-0001";
const YEAR: Duration = Duration::from_secs(365 * 86_400);
/// id-kp-cmcRA.
const CMC_RA: const_oid::ObjectIdentifier = shared::brski::ID_KP_CMC_RA;

/// A domain: its CA and a registrar certificate and key issued by it.
pub(crate) struct Domain {
    pub ca: CertificateAuthority,
    pub key: Arc<SoftwareKey>,
    pub registrar: Certificate,
}

impl Domain {
    /// A domain CA and a registrar with EKU cmcRA + serverAuth + clientAuth (`cmc_ra` false
    /// leaves cmcRA out).
    pub(crate) fn new(name: &str, cmc_ra: bool) -> Domain {
        let ca_key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let ca_cert = create_ca(&format!("CN={name} CA,O={name}"), &ca_key, YEAR * 10, None).unwrap();
        let ca = CertificateAuthority::new(ca_cert, Box::new(ca_key)).unwrap();
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let mut profile = Profile::end_entity(YEAR);
        profile.extended_key_usage =
            vec![const_oid::db::rfc5280::ID_KP_SERVER_AUTH, const_oid::db::rfc5280::ID_KP_CLIENT_AUTH];
        if cmc_ra {
            profile.extended_key_usage.insert(0, CMC_RA);
        }
        let host = format!("registrar.{}.example", name.to_ascii_lowercase().replace(' ', "-"));
        let registrar = issue_for(&ca, &key, &format!("CN={host}"), &[San::Dns(host.clone())], &profile);
        Domain { ca, key: Arc::new(key), registrar }
    }

    /// The domain CA certificate.
    pub(crate) fn ca_cert(&self) -> Certificate {
        self.ca.certificate().clone()
    }

    /// The registrar's signing chain: its certificate, then the domain CA.
    pub(crate) fn chain(&self) -> Vec<Certificate> {
        vec![self.registrar.clone(), self.ca_cert()]
    }
}

/// Issues a certificate for `key` from `ca`.
pub(crate) fn issue_for(
    ca: &CertificateAuthority,
    key: &dyn Signer,
    subject: &str,
    san: &[San],
    profile: &Profile,
) -> Certificate {
    let spki = <spki::SubjectPublicKeyInfoOwned as der::Decode>::from_der(&key.public_key_der()).unwrap();
    ca.issue_for_key(spki, pki::parse_name(subject).unwrap(), san, profile).unwrap()
}

/// A running MASA with one device, [`SERIAL`], owned by `owner`.
pub(crate) struct Lab {
    pub dir: tempfile::TempDir,
    pub masa: Arc<Masa>,
    pub url: String,
    pub device: MintedDevice,
    pub owner: Domain,
    task: tokio::task::JoinHandle<Result<(), masa::MasaError>>,
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a lab; `configure` adjusts the MASA's configuration before it serves.
pub(crate) async fn start(configure: impl FnOnce(&mut MasaConfig)) -> Lab {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = InitOptions::new("127.0.0.1:9443");
    opts.listen = "127.0.0.1:0".parse().unwrap();
    let mut masa = Masa::init(&dir.path().join("masa"), &opts).await.unwrap();
    configure(masa.config_mut());
    let device = masa.mint_idevid_to(SERIAL, &dir.path().join("device")).await.unwrap();
    let owner = Domain::new("Owner Campus", true);
    masa.claim(SERIAL, Owner::DomainCa(owner.ca_cert()), None).await.unwrap();
    let masa = Arc::new(masa);
    let listener = masa::bind(&masa).await.unwrap();
    let url = format!("https://127.0.0.1:{}/.well-known/brski", listener.local_addr().unwrap().port());
    let task = tokio::spawn(masa::serve(masa.clone(), listener));
    Lab { dir, masa, url, device, owner, task }
}

impl Lab {
    /// A client of this MASA presenting `domain`'s registrar certificate.
    pub(crate) fn client(&self, domain: &Domain) -> MasaClient {
        let key: Arc<dyn Signer> = domain.key.clone();
        MasaClient::new(&self.url, vec![self.masa.manufacturer_ca().clone()], Some((domain.chain(), key)))
            .unwrap()
    }

    /// The pledge's voucher-request, signed with the device's IDevID key.
    pub(crate) fn pvr(&self, nonce: Option<&Nonce>, proximity: &Certificate, format: Format) -> Vec<u8> {
        pvr_signed(
            &self.device.key,
            std::slice::from_ref(&self.device.idevid),
            SERIAL,
            nonce,
            proximity,
            format,
        )
    }

    /// The owner registrar's voucher-request for the device, carrying a PVR with `nonce`.
    pub(crate) fn good_rvr(&self, nonce: &Nonce, format: Format) -> Vec<u8> {
        let pvr = self.pvr(Some(nonce), &self.owner.registrar, format);
        let spec = RvrSpec::for_device(&self.device, Some(nonce.clone()), Some(pvr));
        rvr(&self.owner, &spec, format)
    }

    /// Verifies a voucher as the pledge does: with the manufacturer CA it holds.
    pub(crate) fn verify_voucher(&self, bytes: &[u8]) -> Verified<Voucher> {
        let anchor = std::fs::read(self.dir.path().join("device/manufacturer-ca.pem")).unwrap();
        let anchors = pki::certs_from_pem(&anchor).unwrap();
        SignedVoucher::parse(bytes).unwrap().verify(&Trust::now(anchors)).unwrap()
    }

    /// Whether the store's audit log holds a refusal with `status` whose reason contains `needle`.
    pub(crate) async fn refusal_recorded(&self, action: &str, status: u16, needle: &str) -> bool {
        let records = self.masa.store().audit_events(None, 0, 10_000).await.unwrap();
        records.iter().any(|r| {
            r.event.action == action
                && r.event.detail["status"] == status
                && r.event.detail["reason"].as_str().unwrap_or_default().contains(needle)
        })
    }
}

/// A PVR signed by `key` carrying `chain`.
pub(crate) fn pvr_signed(
    key: &dyn Signer,
    chain: &[Certificate],
    serial: &str,
    nonce: Option<&Nonce>,
    proximity: &Certificate,
    format: Format,
) -> Vec<u8> {
    let mut v = Voucher::new(Kind::Request);
    v.assertion = Some(Assertion::Proximity);
    v.serial_number = Some(serial.to_string());
    v.nonce = nonce.cloned();
    v.created_on = Some(time::OffsetDateTime::now_utc());
    v.proximity_registrar_cert = Some(pki::cert_to_der(proximity).unwrap());
    sign_voucher(&v, format, key, chain).unwrap().bytes().to_vec()
}

/// The leaves of a registrar voucher-request.
pub(crate) struct RvrSpec {
    pub serial: String,
    pub nonce: Option<Nonce>,
    pub idevid_issuer: Option<Vec<u8>>,
    pub pvr: Option<Vec<u8>>,
}

impl RvrSpec {
    /// The request a registrar makes for `device` (serial and idevid-issuer from its IDevID).
    pub(crate) fn for_device(device: &MintedDevice, nonce: Option<Nonce>, pvr: Option<Vec<u8>>) -> RvrSpec {
        RvrSpec {
            serial: pki::serial_number(&device.idevid).unwrap(),
            nonce,
            idevid_issuer: Some(pki::idevid_issuer(&device.idevid)),
            pvr,
        }
    }
}

/// An RVR signed by `domain`'s registrar with chain [registrar, domain CA].
pub(crate) fn rvr(domain: &Domain, spec: &RvrSpec, format: Format) -> Vec<u8> {
    rvr_signed(domain.key.as_ref(), &domain.chain(), spec, format)
}

/// An RVR signed by `key` carrying `chain`.
pub(crate) fn rvr_signed(key: &dyn Signer, chain: &[Certificate], spec: &RvrSpec, format: Format) -> Vec<u8> {
    let mut v = Voucher::new(Kind::Request);
    v.assertion = spec.pvr.as_ref().map(|_| Assertion::Proximity);
    v.created_on = Some(time::OffsetDateTime::now_utc());
    v.serial_number = Some(spec.serial.clone());
    v.nonce = spec.nonce.clone();
    v.idevid_issuer = spec.idevid_issuer.clone();
    v.prior_signed_voucher_request = spec.pvr.clone();
    sign_voucher(&v, format, key, chain).unwrap().bytes().to_vec()
}

/// A fresh random nonce.
pub(crate) fn nonce() -> Nonce {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).unwrap();
    Nonce::from_bytes(&b)
}
