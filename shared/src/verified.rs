//! Typed trust: `Verified<T>` can only be made by code in this crate that checked a
//! signature (and, where there is one, the signer's chain). Code that acts on a voucher, a
//! voucher-request or a CSR takes `Verified<T>`, so unverified data cannot reach a decision.

use x509_cert::Certificate;

/// A value whose signature (and signer chain, if any) has been verified.
#[derive(Debug, Clone)]
pub struct Verified<T> {
    value: T,
    signer_chain: Vec<Certificate>,
}

impl<T> Verified<T> {
    /// Only verification code in `shared` creates verified values.
    pub(crate) fn new(value: T, signer_chain: Vec<Certificate>) -> Self {
        Verified { value, signer_chain }
    }

    /// The verified value.
    pub fn value(&self) -> &T {
        &self.value
    }

    /// The signer's certificate path, signer first, trust anchor last (empty for
    /// self-authenticating objects such as a CSR or a raw-key signature).
    pub fn signer_chain(&self) -> &[Certificate] {
        &self.signer_chain
    }

    /// The signer's certificate (first in the chain), if the signer was a certificate.
    pub fn signer(&self) -> Option<&Certificate> {
        self.signer_chain.first()
    }

    /// Gives up the proof and returns the value.
    pub fn into_inner(self) -> T {
        self.value
    }

    /// Transforms the verified value (e.g. decoding the verified payload), keeping the proof.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Verified<U> {
        Verified { value: f(self.value), signer_chain: self.signer_chain }
    }

    /// Like [`Verified::map`] for fallible transforms.
    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Verified<U>, E> {
        Ok(Verified { value: f(self.value)?, signer_chain: self.signer_chain })
    }
}

impl<T> std::ops::Deref for Verified<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}
