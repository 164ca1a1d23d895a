//! The `tpm` item of the CMW collection (RFC 9193-style record `[type, value, indicator]`) that
//! carries the quote next to the EAT.

use super::wire::TpmQuote;
use super::{err, TPM_QUOTE_MEDIA_TYPE};
use crate::agent::evidence::{CMW_EVIDENCE, MAX_EVIDENCE_LEN};
use crate::agent::AgentError;
use crate::b64;
use serde_json::Value;

/// The "tpm" item of a CMW collection, if present (media type must be TPM_QUOTE_MEDIA_TYPE).
pub fn tpm_quote_from_cmw(cmw: &Value) -> Result<Option<TpmQuote>, AgentError> {
    let Some(item) = cmw.get("tpm") else { return Ok(None) };
    let item = item.as_array().ok_or_else(|| err("the tpm item is not a CMW record (array)"))?;
    if !(2..=3).contains(&item.len()) {
        return Err(err("the tpm item is not a CMW record [type, value, indicator]"));
    }
    if item.first().and_then(Value::as_str) != Some(TPM_QUOTE_MEDIA_TYPE) {
        return Err(err(format!("the tpm item is not {TPM_QUOTE_MEDIA_TYPE}")));
    }
    if let Some(ind) = item.get(2) {
        if ind.as_u64() != Some(CMW_EVIDENCE) {
            return Err(err("the tpm item's CMW indicator is not evidence (4)"));
        }
    }
    let data = item.get(1).and_then(Value::as_str).ok_or_else(|| err("the tpm item has no value"))?;
    if data.len() > MAX_EVIDENCE_LEN / 3 * 4 + 4 {
        return Err(err(format!("larger than {MAX_EVIDENCE_LEN} bytes")));
    }
    let bytes = b64::decode_url(data).map_err(|e| err(format!("the tpm item is not base64url: {e}")))?;
    TpmQuote::from_cbor(&bytes).map(Some)
}
