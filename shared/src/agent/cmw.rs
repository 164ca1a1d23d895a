//! The CMW collection (draft-ietf-rats-msg-wrap, JSON form) of a credential request, parsed
//! once at the edge: the `eat` item (required) and the `tpm` item (optional). The server's
//! checks take a [`Cmw`], not the JSON it came in.

use super::evidence::eat_from_cmw;
use super::tpm_quote::{tpm_quote_from_cmw, TpmQuote};
use super::AgentError;
use serde_json::Value;

/// A parsed CMW collection: the EAT bytes and, when the collection has a `tpm` item, that
/// item's TPM quote or why it does not parse.
///
/// A `tpm` item that does not parse is kept as its error rather than refused here: it is a
/// refusal only where quotes are appraised (the registrar's `[attestation]` policy), and
/// ignored elsewhere, as `docs/agent-api.md` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmw {
    eat: Vec<u8>,
    tpm: Option<Result<TpmQuote, AgentError>>,
}

impl Cmw {
    /// Parses the collection: the `eat` item must be `[EAT_MEDIA_TYPE, b64url, ...]`.
    pub fn from_value(cmw: &Value) -> Result<Self, AgentError> {
        let eat = eat_from_cmw(cmw)?;
        Ok(Cmw { eat, tpm: tpm_quote_from_cmw(cmw).transpose() })
    }

    /// The EAT (a tagged COSE_Sign1), still to be verified (`evidence::verify_eat`).
    pub fn eat(&self) -> &[u8] {
        &self.eat
    }

    /// Whether the collection has a `tpm` item at all (parsable or not).
    pub fn has_tpm_item(&self) -> bool {
        self.tpm.is_some()
    }

    /// The TPM quote of the `tpm` item: `None` without one, the parse error for a bad one.
    pub fn tpm_quote(&self) -> Result<Option<&TpmQuote>, AgentError> {
        self.tpm.as_ref().map(|r| r.as_ref().map_err(Clone::clone)).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::evidence::cmw_collection;
    use crate::agent::tpm_quote::TPM_QUOTE_MEDIA_TYPE;

    #[test]
    fn the_eat_item_is_required_and_decoded() {
        let cmw = Cmw::from_value(&cmw_collection(b"eat bytes", None)).unwrap();
        assert_eq!(cmw.eat(), b"eat bytes");
        assert!(!cmw.has_tpm_item());
        assert_eq!(cmw.tpm_quote(), Ok(None));
        let e = Cmw::from_value(&serde_json::json!({"tpm": []})).unwrap_err();
        assert!(matches!(e, AgentError::Evidence(_)), "{e}");
    }

    #[test]
    fn a_bad_tpm_item_is_kept_as_its_error() {
        let cmw =
            Cmw::from_value(&cmw_collection(b"eat", Some((TPM_QUOTE_MEDIA_TYPE, b"not cbor")))).unwrap();
        assert!(cmw.has_tpm_item());
        let e = cmw.tpm_quote().unwrap_err();
        assert!(e.to_string().contains("TPM quote"), "{e}");
    }
}
