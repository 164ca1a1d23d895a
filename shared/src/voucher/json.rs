//! RFC 7951 JSON encoding of voucher data (RFC 8366 / rfc8366bis §"JSON", RFC 8995).
//!
//! `{"ietf-voucher:voucher": {...}}` or `{"ietf-voucher-request:voucher": {...}}` with
//! unqualified leaf names inside. Binary leaves are standard padded base64 on output; on input
//! base64url and missing padding are accepted, as are booleans sent as `"true"`/`"false"`
//! (RFC 8366's own example does that). Duplicated member names are always refused.

use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::error::VoucherError;
use super::leaf::{Leaf, LeafReader, LeafWriter};
use super::model::Voucher;
use super::nonce::Nonce;
use super::vocab::{Assertion, Extension, Kind, LEGACY_PRM_JSON_KEY};
use super::{check_size, jsontree, Strictness};
use crate::rfc3339;

/// Member-name prefix of rfc8366bis extension sub-objects (`"extension:<module-name>"`).
const EXTENSION_PREFIX: &str = "extension:";

/// Decodes JSON voucher data.
///
/// # Errors
///
/// Refuses payloads over [`super::MAX_PAYLOAD_LEN`], malformed JSON, duplicated member names,
/// anything but exactly one known top-level member, and leaves of the wrong type. Unknown
/// leaves are an error in [`Strictness::Strict`] and recorded in `unknown_leaves` in
/// [`Strictness::Lenient`] (RFC 8995 §5.6.1: pledges MUST ignore them).
pub fn from_json(bytes: &[u8], strictness: Strictness) -> Result<Voucher, VoucherError> {
    check_size(bytes)?;
    let top = jsontree::parse(bytes)?;
    let (key, inner) = single_member(top)?;
    let mut voucher = Voucher::new(kind_of(&key)?);
    voucher.legacy_prm_key = key == LEGACY_PRM_JSON_KEY;
    let Value::Object(members) = inner else {
        return Err(wrong_type(&key, "object"));
    };
    for (name, value) in members {
        read_member(&mut voucher, name, value, strictness)?;
    }
    Ok(voucher)
}

/// Encodes voucher data as compact RFC 7951 JSON (members in SID-table order, then extensions).
pub fn to_json(voucher: &Voucher) -> Vec<u8> {
    let mut inner = Map::new();
    for (leaf, item) in voucher.write_leaves(&JsonWriter) {
        inner.insert(leaf.name().to_string(), item);
    }
    for (module, data) in &voucher.extension_data {
        inner.insert(format!("{EXTENSION_PREFIX}{module}"), data.clone());
    }
    let key = match (voucher.kind, voucher.legacy_prm_key) {
        (Kind::Request, true) => LEGACY_PRM_JSON_KEY,
        (kind, _) => kind.json_key(),
    };
    let mut top = Map::new();
    top.insert(key.to_string(), Value::Object(inner));
    // Serializing a `Value` into memory has no failure path (all keys are strings).
    serde_json::to_vec(&Value::Object(top)).unwrap_or_default()
}

fn single_member(top: Value) -> Result<(String, Value), VoucherError> {
    let Value::Object(map) = top else {
        return Err(wrong_type("(top level)", "object"));
    };
    if map.len() != 1 {
        return Err(VoucherError::TopLevelCount(map.len()));
    }
    map.into_iter().next().ok_or(VoucherError::TopLevelCount(0))
}

fn kind_of(key: &str) -> Result<Kind, VoucherError> {
    match key {
        "ietf-voucher:voucher" => Ok(Kind::Voucher),
        "ietf-voucher-request:voucher" | LEGACY_PRM_JSON_KEY => Ok(Kind::Request),
        other => Err(VoucherError::WrongTopLevel(format!("\"{other}\""))),
    }
}

fn read_member(
    voucher: &mut Voucher,
    name: String,
    value: Value,
    strictness: Strictness,
) -> Result<(), VoucherError> {
    if let Some(module) = name.strip_prefix(EXTENSION_PREFIX) {
        voucher.extension_data.insert(module.to_string(), value);
        return Ok(());
    }
    match Leaf::by_name(voucher.kind, &name) {
        Some(leaf) => voucher.read_leaf(leaf, &JsonLeaf(&value)),
        None if strictness == Strictness::Strict => Err(VoucherError::UnknownLeaf(name)),
        None => {
            voucher.unknown_leaves.push(name);
            Ok(())
        }
    }
}

fn wrong_type(leaf: &str, expected: &'static str) -> VoucherError {
    VoucherError::WrongType { leaf: leaf.to_string(), expected }
}

/// One JSON member value, read as a typed leaf.
struct JsonLeaf<'a>(&'a Value);

impl JsonLeaf<'_> {
    fn str(&self, leaf: Leaf, expected: &'static str) -> Result<&str, VoucherError> {
        self.0.as_str().ok_or_else(|| wrong_type(leaf.name(), expected))
    }
}

fn decode_base64(leaf: Leaf, text: &str) -> Result<Vec<u8>, VoucherError> {
    crate::b64::decode_lenient(text)
        .ok()
        .ok_or_else(|| VoucherError::InvalidBase64 { leaf: leaf.name().to_string() })
}

fn extension_entry(leaf: Leaf, item: &Value) -> Result<Extension, VoucherError> {
    match item {
        Value::String(name) => Ok(Extension::Name(name.clone())),
        Value::Number(n) => n
            .as_u64()
            .map(Extension::Sid)
            .ok_or_else(|| wrong_type(leaf.name(), "array of strings or unsigned integers")),
        _ => Err(wrong_type(leaf.name(), "array of strings or unsigned integers")),
    }
}

impl LeafReader for JsonLeaf<'_> {
    fn text(&self, leaf: Leaf) -> Result<String, VoucherError> {
        self.str(leaf, "string").map(str::to_owned)
    }

    fn binary(&self, leaf: Leaf) -> Result<Vec<u8>, VoucherError> {
        decode_base64(leaf, self.str(leaf, "base64 string")?)
    }

    fn binary_list(&self, leaf: Leaf) -> Result<Vec<Vec<u8>>, VoucherError> {
        match self.0 {
            Value::String(one) => Ok(vec![decode_base64(leaf, one)?]),
            Value::Array(items) => items.iter().map(|i| JsonLeaf(i).binary(leaf)).collect(),
            _ => Err(wrong_type(leaf.name(), "base64 string or array of them")),
        }
    }

    fn boolean(&self, leaf: Leaf) -> Result<bool, VoucherError> {
        match self.0 {
            Value::Bool(b) => Ok(*b),
            Value::String(s) if s == "true" => Ok(true),
            Value::String(s) if s == "false" => Ok(false),
            _ => Err(wrong_type(leaf.name(), "boolean")),
        }
    }

    fn date(&self, leaf: Leaf) -> Result<OffsetDateTime, VoucherError> {
        let text = self.str(leaf, "RFC 3339 date-and-time string")?;
        rfc3339::parse(text)
            .map_err(|_| VoucherError::InvalidDate { leaf: leaf.name().to_string(), value: text.to_string() })
    }

    fn assertion(&self, leaf: Leaf) -> Result<Assertion, VoucherError> {
        let name = self.str(leaf, "enumeration name string")?;
        Assertion::from_name(name).ok_or_else(|| VoucherError::InvalidEnum {
            leaf: leaf.name().to_string(),
            value: format!("\"{name}\""),
        })
    }

    fn nonce(&self, leaf: Leaf) -> Result<Nonce, VoucherError> {
        Ok(Nonce::from_text(self.str(leaf, "string")?.to_owned()))
    }

    fn extensions(&self, leaf: Leaf) -> Result<Vec<Extension>, VoucherError> {
        let Value::Array(items) = self.0 else {
            return Err(wrong_type(leaf.name(), "array of strings or unsigned integers"));
        };
        items.iter().map(|i| extension_entry(leaf, i)).collect()
    }
}

/// Produces RFC 7951 member values.
struct JsonWriter;

impl LeafWriter for JsonWriter {
    type Item = Value;

    fn text(&self, value: &str) -> Value {
        Value::String(value.to_owned())
    }

    fn binary(&self, value: &[u8]) -> Value {
        Value::String(crate::b64::encode(value))
    }

    /// Always an array: the BRSKI-PRM refinement of `agent-sign-cert`.
    fn binary_list(&self, value: &[Vec<u8>]) -> Value {
        Value::Array(value.iter().map(|c| self.binary(c)).collect())
    }

    fn boolean(&self, value: bool) -> Value {
        Value::Bool(value)
    }

    fn date(&self, value: &OffsetDateTime) -> Value {
        Value::String(rfc3339::format(value))
    }

    fn assertion(&self, value: Assertion) -> Value {
        Value::String(value.name().to_owned())
    }

    fn nonce(&self, value: &Nonce) -> Value {
        Value::String(value.json_text())
    }

    /// Names as strings, SIDs as JSON numbers (so the two stay distinguishable).
    fn extensions(&self, value: &[Extension]) -> Value {
        let item = |e: &Extension| match e {
            Extension::Name(n) => Value::String(n.clone()),
            Extension::Sid(s) => Value::Number((*s).into()),
        };
        Value::Array(value.iter().map(item).collect())
    }
}
