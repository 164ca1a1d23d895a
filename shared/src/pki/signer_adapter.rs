//! Bridges a [`Signer`] (any key URI) to the RustCrypto builder traits that `x509-cert` and
//! `cms` sign through, so a TPM or PKCS#11 key can sign certificates and CMS like a file key.

use crate::crypto::raw_to_der;
use crate::keys::Signer;
use der::asn1::BitString;
use spki::{
    AlgorithmIdentifierOwned, Document, DynSignatureAlgorithmIdentifier, EncodePublicKey,
    SignatureBitStringEncoding,
};

/// A `&dyn Signer` seen as a RustCrypto keypair whose signatures are DER-encoded.
pub(crate) struct X509Signer<'a>(pub &'a dyn Signer);

/// A DER SubjectPublicKeyInfo, the "verifying key" of an [`X509Signer`].
#[derive(Clone)]
pub(crate) struct SpkiDer(Vec<u8>);

impl EncodePublicKey for SpkiDer {
    fn to_public_key_der(&self) -> spki::Result<Document> {
        Ok(Document::try_from(self.0.as_slice())?)
    }
}

/// A signature in its X.509 / CMS encoding (ECDSA DER, or Ed25519 raw).
pub(crate) struct DerSig(Vec<u8>);

impl SignatureBitStringEncoding for DerSig {
    fn to_bitstring(&self) -> der::Result<BitString> {
        BitString::from_bytes(&self.0)
    }
}

impl signature::Keypair for X509Signer<'_> {
    type VerifyingKey = SpkiDer;
    fn verifying_key(&self) -> SpkiDer {
        SpkiDer(self.0.public_key_der())
    }
}

impl DynSignatureAlgorithmIdentifier for X509Signer<'_> {
    fn signature_algorithm_identifier(&self) -> spki::Result<AlgorithmIdentifierOwned> {
        Ok(AlgorithmIdentifierOwned { oid: self.0.algorithm().x509_oid(), parameters: None })
    }
}

impl signature::Signer<DerSig> for X509Signer<'_> {
    fn try_sign(&self, msg: &[u8]) -> Result<DerSig, signature::Error> {
        let raw = self.0.sign(msg).map_err(signature::Error::from_source)?;
        raw_to_der(self.0.algorithm(), &raw).map(DerSig).map_err(signature::Error::from_source)
    }
}
