//! Minting IDevIDs (IEEE 802.1AR, RFC 8995 §2.3): a fresh device key and a certificate from
//! the manufacturer CA with the device serial number in the subject (X520SerialNumber,
//! 2.5.4.5), the MASA URL authority in id-pe-masa-url, notAfter 99991231235959Z, no key usage
//! or extended key usage restrictions, and AKI/SKI. Every minted serial is recorded in the
//! store (`masa.device.<serial>`, plus the certificate and an audit event), which is how the
//! MASA later knows a serial is one of its devices.

use crate::error::{io_error, MasaError};
use crate::state::{rdn_value, Masa};
use der::{Decode, Encode};
use serde::{Deserialize, Serialize};
use shared::keys::{write_key_file, Algorithm, Signer, SoftwareKey};
use shared::pki::{self, Profile};
use shared::store::{AuditEvent, StoreExt};
use spki::SubjectPublicKeyInfoOwned;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// The device key file written next to the IDevID (mode 0600).
pub const IDEVID_KEY_FILE: &str = "idevid.key";
/// The IDevID certificate file.
pub const IDEVID_CERT_FILE: &str = "idevid.pem";
/// The manufacturer CA the pledge must hold to verify vouchers.
pub const ANCHOR_FILE: &str = "manufacturer-ca.pem";
/// Store setting prefix of minted devices.
pub(crate) const DEVICE_PREFIX: &str = "masa.device.";
/// 9999-12-31T23:59:59Z, the "no well-defined expiration" notAfter of RFC 5280 §4.1.2.5.
pub(crate) const IDEVID_NOT_AFTER_UNIX: u64 = 253_402_300_799;
/// Longest serial number (X520SerialNumber is at most 64 characters).
const MAX_SERIAL_LEN: usize = 64;

/// A device the MASA minted: its key, its IDevID and the anchor it needs.
#[derive(Debug)]
pub struct MintedDevice {
    /// The device serial number (subject serialNumber).
    pub serial: String,
    /// The device's private key.
    pub key: SoftwareKey,
    /// The IDevID certificate.
    pub idevid: Certificate,
    /// The manufacturer CA: the pledge's voucher trust anchor.
    pub manufacturer_ca: Certificate,
}

/// Which certificate of a device [`Masa::issue_device_cert`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeviceCert {
    /// The IDevID (no key usage restrictions, id-pe-masa-url).
    Idevid,
    /// The TPM attestation key's (digitalSignature, EKU tcg-kp-AIKCertificate).
    AttestationKey,
}

/// What the store keeps about a minted device (`masa.device.<serial>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    /// The device serial number.
    pub serial: String,
    /// The IDevID's certificate serial, lower-case hex.
    pub idevid_serial_hex: String,
    /// When it was minted (RFC 3339).
    pub minted_at: String,
}

/// Checks that `serial` is usable as a device serial number and as a directory name:
/// 1 to 64 characters from `A-Z a-z 0-9 - . _ :`, not starting with a dot.
pub(crate) fn check_serial(serial: &str) -> Result<(), MasaError> {
    let ok_chars = serial.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':'));
    if serial.is_empty() || serial.len() > MAX_SERIAL_LEN || !ok_chars || serial.starts_with('.') {
        return Err(MasaError::Invalid(format!(
            "serial number {serial:?} must be 1 to {MAX_SERIAL_LEN} characters of A-Z a-z 0-9 - . _ : \
             and must not start with a dot"
        )));
    }
    Ok(())
}

/// The serial numbers of a batch: `prefix` followed by 1..=count, zero-padded to at least four
/// digits (`SN-0001`, `SN-0002`, ...).
pub(crate) fn batch_serials(prefix: &str, count: usize) -> Vec<String> {
    let width = count.to_string().len().max(4);
    (1..=count).map(|i| format!("{prefix}{i:0width$}")).collect()
}

impl Masa {
    /// Mints one device: key, IDevID, store records. Refuses a serial minted before.
    pub async fn mint_idevid(&self, serial: &str) -> Result<MintedDevice, MasaError> {
        check_serial(serial)?;
        if self.device(serial).await?.is_some() {
            return Err(MasaError::AlreadyMinted(serial.to_string()));
        }
        let key = SoftwareKey::generate(Algorithm::Es256)?;
        let idevid = self.issue_device_cert(serial, &key.public_key_der(), DeviceCert::Idevid)?;
        self.record_device(serial, &idevid).await?;
        Ok(MintedDevice {
            serial: serial.to_string(),
            key,
            idevid,
            manufacturer_ca: self.manufacturer_ca().clone(),
        })
    }

    /// Mints one device and writes `idevid.key` (0600), `idevid.pem` and
    /// `manufacturer-ca.pem` into `out` (created if needed; existing files are not replaced).
    pub async fn mint_idevid_to(&self, serial: &str, out: &Path) -> Result<MintedDevice, MasaError> {
        refuse_existing_device_files(out)?;
        let device = self.mint_idevid(serial).await?;
        write_device(out, &device)?;
        Ok(device)
    }

    /// Mints `count` devices with serials from [`batch_serials`], each into `out/<serial>/`;
    /// `progress(done, total, serial)` is called after each device.
    pub async fn mint_batch(
        &self,
        prefix: &str,
        count: usize,
        out: &Path,
        progress: &mut dyn FnMut(usize, usize, &str),
    ) -> Result<Vec<String>, MasaError> {
        let serials = batch_serials(prefix, count);
        for s in &serials {
            check_serial(s)?;
            refuse_existing_device_files(&out.join(s))?;
            if self.device(s).await?.is_some() {
                return Err(MasaError::AlreadyMinted(s.clone()));
            }
        }
        for (i, s) in serials.iter().enumerate() {
            self.mint_idevid_to(s, &out.join(s)).await?;
            progress(i + 1, count, s);
        }
        Ok(serials)
    }

    /// The record of a minted device, if `serial` is one.
    pub async fn device(&self, serial: &str) -> Result<Option<DeviceRecord>, MasaError> {
        Ok(self.store().get_setting_json(&format!("{DEVICE_PREFIX}{serial}")).await?)
    }

    /// Issues a device certificate for the public key `spki_der` (DER SubjectPublicKeyInfo):
    /// the IDevID, or the attestation key's certificate. The builder takes a lifetime, not a
    /// notAfter, and refuses a notAfter past the last whole second of 9999, so the certificate
    /// is built to end one second early and then given its 99991231235959Z (see [`end_of_time`]).
    pub(crate) fn issue_device_cert(
        &self,
        serial: &str,
        spki_der: &[u8],
        which: DeviceCert,
    ) -> Result<Certificate, MasaError> {
        let name = rdn_value(&self.config().manufacturer);
        let subject = pki::name_with_serial(&format!("CN={name} device,O={name}"), serial)?;
        let spki =
            SubjectPublicKeyInfoOwned::from_der(spki_der).map_err(|e| MasaError::Internal(e.to_string()))?;
        for _ in 0..3 {
            let mut profile = Profile::end_entity(until_second_before_end()?);
            profile.copy_csr_san = false;
            match which {
                DeviceCert::Idevid => {
                    profile.key_usage = Vec::new();
                    profile.extra_extensions.push(pki::masa_url_extension(&self.config().url)?);
                }
                // TCG: an attestation key certificate says so with EKU tcg-kp-AIKCertificate.
                DeviceCert::AttestationKey => {
                    profile.extended_key_usage = vec![shared::agent::tpm_quote::TCG_KP_AIK_CERTIFICATE];
                }
            }
            let cert = self.manufacturer().issue_for_key(spki.clone(), subject.clone(), &[], &profile)?;
            let not_after = cert.tbs_certificate().validity().not_after.to_unix_duration().as_secs();
            if not_after == IDEVID_NOT_AFTER_UNIX - 1 {
                return end_of_time(&cert, self.manufacturer().signer());
            }
        }
        Err(MasaError::Internal("could not set the IDevID notAfter to 99991231235959Z".into()))
    }

    pub(crate) async fn record_device(&self, serial: &str, idevid: &Certificate) -> Result<(), MasaError> {
        let issued = pki::issued_record(idevid, "idevid")?;
        let now = OffsetDateTime::now_utc();
        let record = DeviceRecord {
            serial: serial.to_string(),
            idevid_serial_hex: issued.serial_hex.clone(),
            minted_at: shared::rfc3339::format(&now),
        };
        let event = AuditEvent {
            actor: "masa".into(),
            action: "masa.idevid.minted".into(),
            subject: serial.to_string(),
            detail: serde_json::json!({ "idevid-serial": issued.serial_hex, "masa-url": self.config().url }),
            at: now,
        };
        self.store().record_certificate_audited(&issued, &event).await?;
        self.store().put_setting_json(&format!("{DEVICE_PREFIX}{serial}"), &record).await?;
        Ok(())
    }
}

/// The lifetime from now that ends within the second 9999-12-31T23:59:58Z (half a second of
/// slack for the builder's own clock reading).
fn until_second_before_end() -> Result<Duration, MasaError> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_err(|e| MasaError::Internal(e.to_string()))?;
    let end = Duration::from_secs(IDEVID_NOT_AFTER_UNIX) - Duration::from_millis(500);
    Ok(end.saturating_sub(now))
}

/// A certificate as three DER parts, for re-signing.
#[derive(der::Sequence)]
struct CertificateParts {
    tbs: der::Any,
    algorithm: spki::AlgorithmIdentifierOwned,
    signature: der::asn1::BitString,
}

/// Re-signs `cert` (notAfter 99991231235958Z, GeneralizedTime) with notAfter
/// 99991231235959Z: the two encodings have the same length, so only those bytes of the
/// to-be-signed certificate change before it is signed again by `issuer`.
fn end_of_time(cert: &Certificate, issuer: &dyn Signer) -> Result<Certificate, MasaError> {
    const EARLY: &[u8] = b"\x18\x0f99991231235958Z";
    const END: &[u8] = b"\x18\x0f99991231235959Z";
    let internal = |e: &dyn std::fmt::Display| MasaError::Internal(format!("IDevID notAfter: {e}"));
    let mut tbs = cert.tbs_certificate().to_der().map_err(|e| internal(&e))?;
    let hits: Vec<usize> =
        tbs.windows(EARLY.len()).enumerate().filter(|(_, w)| *w == EARLY).map(|(i, _)| i).collect();
    let [at] = hits.as_slice() else { return Err(internal(&"notAfter not found exactly once")) };
    tbs[*at..*at + END.len()].copy_from_slice(END);
    let raw = issuer.sign(&tbs)?;
    let sig = shared::crypto::raw_to_der(issuer.algorithm(), &raw).map_err(|e| internal(&e))?;
    let parts = CertificateParts {
        tbs: der::Any::from_der(&tbs).map_err(|e| internal(&e))?,
        algorithm: cert.signature_algorithm().clone(),
        signature: der::asn1::BitString::from_bytes(&sig).map_err(|e| internal(&e))?,
    };
    let der = parts.to_der().map_err(|e| internal(&e))?;
    Certificate::from_der(&der).map_err(|e| internal(&e))
}

fn device_files(dir: &Path) -> [PathBuf; 3] {
    [dir.join(IDEVID_KEY_FILE), dir.join(IDEVID_CERT_FILE), dir.join(ANCHOR_FILE)]
}

fn refuse_existing_device_files(dir: &Path) -> Result<(), MasaError> {
    match device_files(dir).into_iter().find(|p| p.exists()) {
        Some(p) => Err(MasaError::Invalid(format!(
            "{} already exists; refusing to overwrite a device's files",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// Writes a minted device into `dir`: `idevid.key` (0600, never overwritten), `idevid.pem`,
/// `manufacturer-ca.pem`. Returns the paths written.
pub fn write_device(dir: &Path, device: &MintedDevice) -> Result<[PathBuf; 3], MasaError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let [key, cert, anchor] = device_files(dir);
    write_key_file(&key, &device.key)?;
    std::fs::write(&cert, pki::cert_to_pem(&device.idevid)?).map_err(io_error(&cert))?;
    std::fs::write(&anchor, pki::cert_to_pem(&device.manufacturer_ca)?).map_err(io_error(&anchor))?;
    Ok([key, cert, anchor])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serial_rules() {
        assert!(check_serial("00-D0-E5-F2-00-02").is_ok());
        assert!(check_serial("JADA123456789").is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "with space", &"x".repeat(65)] {
            assert!(check_serial(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn batch_serials_are_padded() {
        assert_eq!(batch_serials("SN-", 3), ["SN-0001", "SN-0002", "SN-0003"]);
        assert_eq!(batch_serials("X", 12345)[0], "X00001");
    }
}
