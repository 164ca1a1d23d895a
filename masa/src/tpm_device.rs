//! Minting a device whose keys are born in its TPM (`brski masa idevid --tpm <tcti>`), as a
//! factory line does: the IDevID key and an Initial Attestation Key (IAK, a restricted signing
//! key that can only sign TPM-made structures such as quotes) are created inside the device's
//! TPM at the TCG handles (0x81020001, 0x81020000) and never leave it; the MASA certifies both
//! public keys with the device's serial number in the subject: the IDevID as usual, the IAK with
//! EKU tcg-kp-AIKCertificate (2.23.133.8.3), which is how a registrar later knows that a quote
//! signed by that key came from that device's TPM.
//!
//! The device directory then holds `idevid.pem`, `iak.pem`, `manufacturer-ca.pem` and, instead
//! of key files, `idevid.key-uri` and `iak.key-uri` (one `tpm:` URI each), which `brski pledge`
//! picks up by default.

use crate::error::{io_error, MasaError};
use crate::idevid::{check_serial, DeviceCert, ANCHOR_FILE, IDEVID_CERT_FILE, IDEVID_KEY_FILE};
use crate::state::Masa;
use shared::pki;
use shared::store::AuditEvent;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use x509_cert::Certificate;

/// The IDevID key reference (a `tpm:` URI) of a TPM device.
pub(crate) const IDEVID_KEY_URI_FILE: &str = "idevid.key-uri";
/// The attestation key reference of a TPM device.
pub(crate) const IAK_KEY_URI_FILE: &str = "iak.key-uri";
/// The attestation key's certificate.
pub(crate) const IAK_CERT_FILE: &str = "iak.pem";

/// A device minted into its TPM.
#[derive(Debug, Clone)]
pub struct TpmDevice {
    /// The device serial number.
    pub serial: String,
    /// The IDevID certificate.
    pub idevid: Certificate,
    /// The IAK certificate.
    pub iak: Certificate,
    /// The IDevID key's URI.
    pub idevid_key: String,
    /// The IAK's URI.
    pub iak_key: String,
    /// The manufacturer CA.
    pub manufacturer_ca: Certificate,
}

impl Masa {
    /// Certifies a device's keys from their public halves (DER SubjectPublicKeyInfo): the IDevID
    /// and the attestation key. Records the device like [`Masa::mint_idevid`] and audits the
    /// IAK certificate. Refuses a serial minted before.
    pub async fn certify_tpm_device(
        &self,
        serial: &str,
        idevid_spki: &[u8],
        iak_spki: &[u8],
    ) -> Result<(Certificate, Certificate), MasaError> {
        self.check_new_serial(serial).await?;
        let idevid = self.issue_device_cert(serial, idevid_spki, DeviceCert::Idevid)?;
        let iak = self.issue_device_cert(serial, iak_spki, DeviceCert::AttestationKey)?;
        self.record_device(serial, &idevid).await?;
        let issued = pki::issued_record(&iak, "iak")?;
        let event = AuditEvent {
            actor: "masa".into(),
            action: "masa.iak.certified".into(),
            subject: serial.to_string(),
            detail: serde_json::json!({ "iak-serial": issued.serial_hex }),
            at: OffsetDateTime::now_utc(),
        };
        self.store().record_certificate_audited(&issued, &event).await?;
        Ok((idevid, iak))
    }

    /// Creates the IDevID key and the IAK in the TPM `tcti` names, certifies them and writes
    /// the device directory `out`. A TPM that already holds keys at those handles is refused
    /// (a device is minted once), as are existing files in `out`.
    #[cfg(feature = "tpm")]
    pub async fn mint_tpm_device_to(
        &self,
        serial: &str,
        tcti: &str,
        out: &Path,
    ) -> Result<TpmDevice, MasaError> {
        use shared::keys::TpmUri;
        use shared::tpm::{create_key, KeyKind, IAK_HANDLE, IDEVID_HANDLE};
        refuse_existing(out)?;
        self.check_new_serial(serial).await?;
        let idevid_key = create_key(tcti, IDEVID_HANDLE, KeyKind::Signing, false)?;
        // A half-minted TPM would refuse the next attempt: remove what this one created.
        let undo = |handles: &[u32]| {
            for &h in handles {
                let _ = shared::tpm::evict_key(tcti, h);
            }
        };
        let iak_key = create_key(tcti, IAK_HANDLE, KeyKind::Attestation, false)
            .inspect_err(|_| undo(&[IDEVID_HANDLE]))?;
        let (idevid, iak) = self
            .certify_tpm_device(serial, &idevid_key.spki, &iak_key.spki)
            .await
            .inspect_err(|_| undo(&[IDEVID_HANDLE, IAK_HANDLE]))?;
        let device = TpmDevice {
            serial: serial.to_string(),
            idevid,
            iak,
            idevid_key: TpmUri::new(IDEVID_HANDLE, tcti).to_string(),
            iak_key: TpmUri::new(IAK_HANDLE, tcti).to_string(),
            manufacturer_ca: self.manufacturer_ca().clone(),
        };
        write_tpm_device(out, &device)?;
        Ok(device)
    }

    async fn check_new_serial(&self, serial: &str) -> Result<(), MasaError> {
        check_serial(serial)?;
        match self.device(serial).await? {
            Some(_) => Err(MasaError::AlreadyMinted(serial.to_string())),
            None => Ok(()),
        }
    }
}

/// The files of a TPM device directory.
pub fn tpm_device_files(dir: &Path) -> [PathBuf; 5] {
    [IDEVID_KEY_URI_FILE, IDEVID_CERT_FILE, IAK_KEY_URI_FILE, IAK_CERT_FILE, ANCHOR_FILE].map(|f| dir.join(f))
}

#[cfg_attr(not(feature = "tpm"), allow(dead_code))]
fn refuse_existing(dir: &Path) -> Result<(), MasaError> {
    let mut all = tpm_device_files(dir).to_vec();
    all.push(dir.join(IDEVID_KEY_FILE));
    match all.into_iter().find(|p| p.exists()) {
        Some(p) => Err(MasaError::Invalid(format!(
            "{} already exists; refusing to overwrite a device's files",
            p.display()
        ))),
        None => Ok(()),
    }
}

/// Writes a TPM device directory; returns the paths written.
pub fn write_tpm_device(dir: &Path, d: &TpmDevice) -> Result<[PathBuf; 5], MasaError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let paths = tpm_device_files(dir);
    let contents = [
        format!("{}\n", d.idevid_key),
        pki::cert_to_pem(&d.idevid)?,
        format!("{}\n", d.iak_key),
        pki::cert_to_pem(&d.iak)?,
        pki::cert_to_pem(&d.manufacturer_ca)?,
    ];
    for (path, text) in paths.iter().zip(contents) {
        std::fs::write(path, text).map_err(io_error(path))?;
    }
    Ok(paths)
}
