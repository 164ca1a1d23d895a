//! Appraisal step 5: the expected PCR values (the registrar's policy) against the quoted ones.

use super::err;
use crate::agent::AgentError;
use std::collections::BTreeMap;

/// Expected PCR values (index -> value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PcrPolicy {
    /// The PCRs that must be quoted, with their exact values.
    pub pcrs: BTreeMap<u8, Vec<u8>>,
}

impl PcrPolicy {
    /// Step 5: every PCR of the policy was quoted (`quoted`) with exactly the expected value.
    pub(super) fn check(&self, quoted: &BTreeMap<u8, Vec<u8>>) -> Result<(), AgentError> {
        for (i, want) in &self.pcrs {
            match quoted.get(i) {
                None => return Err(err(format!("policy wants PCR {i}, which the quote does not cover"))),
                Some(got) if got != want => {
                    return Err(err(format!(
                        "PCR {i} is {} where policy wants {}",
                        short_hex(got),
                        short_hex(want)
                    )))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// A PCR value for a refusal message: hex, or `empty`.
fn short_hex(v: &[u8]) -> String {
    if v.is_empty() {
        "empty".into()
    } else {
        hex::encode(v)
    }
}
