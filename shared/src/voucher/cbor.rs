//! YANG-CBOR (RFC 9254) encoding of voucher data, as used by cBRSKI inside COSE_Sign1.
//!
//! `{2451: {...}}` (voucher) or `{2501: {...}}` (voucher-request); inner keys are delta SIDs
//! (SID − container SID). Names are legal instead of SIDs, also mixed, and so is an absolute
//! SID in tag 47. Extensions use `47(<module SID>)` (or `"extension:<module>"`) keys with a
//! sub-map. Output is deterministic: shortest-form integers and keys in bytewise order of their
//! encodings (RFC 8949 §4.2.1).

use std::collections::HashSet;

use ciborium::value::{Integer, Value};
use time::OffsetDateTime;

use super::error::VoucherError;
use super::leaf::{Leaf, LeafReader, LeafWriter};
use super::model::Voucher;
use super::nonce::Nonce;
use super::vocab::{Assertion, Extension, Kind};
use super::{check_size, Strictness};
use crate::rfc3339;

/// CBOR tag for an absolute SID used as a map key (RFC 9254 §4.2.1).
const TAG_SID: u64 = 47;
/// Name-form prefix of an extension sub-map key.
const EXTENSION_PREFIX: &str = "extension:";

/// Decodes CBOR voucher data.
///
/// # Errors
///
/// Refuses payloads over [`super::MAX_PAYLOAD_LEN`], malformed or truncated CBOR, bytes after
/// the top-level item, duplicate keys (also a SID and a name for the same leaf), a top-level map
/// other than `{2451: map}` / `{2501: map}` (or their names), and leaves of the wrong type.
/// An unknown SID or name is an error in [`Strictness::Strict`]; in [`Strictness::Lenient`] it
/// is recorded in `unknown_leaves` (as `sid:<absolute SID>` or the name).
pub fn from_cbor(bytes: &[u8], strictness: Strictness) -> Result<Voucher, VoucherError> {
    check_size(bytes)?;
    let (kind, inner) = container(parse_item(bytes)?)?;
    let Value::Map(entries) = inner else {
        return Err(wrong_type(kind.json_key(), "map"));
    };
    let mut voucher = Voucher::new(kind);
    let mut seen = HashSet::new();
    for (key, value) in entries {
        let target = resolve(kind, &key, &value)?;
        if !seen.insert(target.label()) {
            return Err(VoucherError::DuplicateLeaf(target.label()));
        }
        read_entry(&mut voucher, target, value, strictness)?;
    }
    Ok(voucher)
}

/// Encodes voucher data as deterministic YANG-CBOR with delta-SID keys.
///
/// Text-form nonces are emitted as the byte string they decode to (standard base64 or
/// base64url), or as a text string when they do not decode. `extension_data` (the JSON
/// extension members) is not emitted; `cbor_extension_data` is.
pub fn to_cbor(voucher: &Voucher) -> Vec<u8> {
    let mut entries: Vec<(Value, Value)> = voucher
        .write_leaves(&CborWriter)
        .into_iter()
        .filter_map(|(leaf, item)| Some((Value::from(leaf.delta(voucher.kind)?), item)))
        .collect();
    for (ext, data) in &voucher.cbor_extension_data {
        entries.push((extension_key(ext), data.clone()));
    }
    entries.sort_by_cached_key(|(key, _)| encode(key));
    let sid = Value::from(voucher.kind.sid());
    encode(&Value::Map(vec![(sid, Value::Map(entries))]))
}

fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into a Vec cannot fail, and every `Value` is serializable.
    match ciborium::ser::into_writer(value, &mut out) {
        Ok(()) => out,
        Err(_) => Vec::new(),
    }
}

fn extension_key(ext: &Extension) -> Value {
    match ext {
        Extension::Sid(sid) => Value::Tag(TAG_SID, Box::new(Value::from(*sid))),
        Extension::Name(name) => Value::Text(format!("{EXTENSION_PREFIX}{name}")),
    }
}

/// Reads exactly one CBOR data item and refuses anything after it.
fn parse_item(bytes: &[u8]) -> Result<Value, VoucherError> {
    let mut rest = bytes;
    let value: Value = ciborium::de::from_reader(&mut rest).map_err(de_error)?;
    if !rest.is_empty() {
        return Err(VoucherError::TrailingData { extra: rest.len() });
    }
    Ok(value)
}

fn de_error(e: ciborium::de::Error<std::io::Error>) -> VoucherError {
    use ciborium::de::Error;
    match e {
        Error::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => VoucherError::Truncated,
        Error::Io(io) => VoucherError::MalformedCbor(io.to_string()),
        Error::Syntax(at) => VoucherError::MalformedCbor(format!("syntax error at byte {at}")),
        Error::Semantic(_, msg) => VoucherError::MalformedCbor(msg),
        Error::RecursionLimitExceeded => VoucherError::MalformedCbor("nested too deeply".into()),
    }
}

/// The top-level map: exactly one entry, keyed by the container SID or name.
fn container(top: Value) -> Result<(Kind, Value), VoucherError> {
    let Value::Map(mut entries) = top else {
        return Err(wrong_type("(top level)", "map"));
    };
    if let [(a, _), (b, _), ..] = entries.as_slice() {
        if a == b {
            return Err(VoucherError::DuplicateLeaf(describe(a)));
        }
    }
    if entries.len() != 1 {
        return Err(VoucherError::TopLevelCount(entries.len()));
    }
    let (key, inner) = entries.remove(0);
    Ok((container_kind(&key)?, inner))
}

fn container_kind(key: &Value) -> Result<Kind, VoucherError> {
    let sid = key.as_integer().map(i128::from);
    let is = |kind: Kind| sid == Some(i128::from(kind.sid())) || key.as_text() == Some(kind.json_key());
    match (is(Kind::Voucher), is(Kind::Request)) {
        (true, _) => Ok(Kind::Voucher),
        (_, true) => Ok(Kind::Request),
        _ => Err(VoucherError::WrongTopLevel(describe(key))),
    }
}

/// A short human description of a CBOR map key, for error messages.
fn describe(key: &Value) -> String {
    match key {
        Value::Integer(i) => i128::from(*i).to_string(),
        Value::Text(t) => format!("\"{t}\""),
        Value::Tag(tag, inner) => format!("{tag}({})", describe(inner)),
        _ => "(a key that is neither an integer nor a text string)".to_string(),
    }
}

/// What one key of the voucher map refers to.
enum Target {
    Leaf(Leaf),
    Extension(Extension),
    Unknown { label: String, error: VoucherError },
}

impl Target {
    /// The identity used for duplicate detection and in `unknown_leaves`.
    fn label(&self) -> String {
        match self {
            Target::Leaf(leaf) => leaf.name().to_string(),
            Target::Extension(Extension::Sid(sid)) => format!("sid:{sid}"),
            Target::Extension(Extension::Name(name)) => format!("{EXTENSION_PREFIX}{name}"),
            Target::Unknown { label, .. } => label.clone(),
        }
    }
}

fn resolve(kind: Kind, key: &Value, value: &Value) -> Result<Target, VoucherError> {
    match key {
        Value::Integer(delta) => Ok(resolve_delta(kind, i128::from(*delta))),
        Value::Tag(TAG_SID, sid) => match sid.as_integer() {
            Some(sid) => Ok(resolve_absolute(kind, i128::from(sid), value)),
            None => Err(bad_key()),
        },
        Value::Text(name) => Ok(resolve_name(kind, name)),
        _ => Err(bad_key()),
    }
}

fn bad_key() -> VoucherError {
    VoucherError::MalformedCbor("a voucher map key must be a delta SID, a tag-47 SID or a leaf name".into())
}

fn resolve_delta(kind: Kind, delta: i128) -> Target {
    let sid = i128::from(kind.sid()) + delta;
    match Leaf::by_delta(kind, delta) {
        Some(leaf) => Target::Leaf(leaf),
        None => Target::Unknown {
            label: format!("sid:{sid}"),
            error: VoucherError::UnknownSid { sid, delta, kind },
        },
    }
}

/// A tag-47 key: an absolute leaf SID, or (with a map value) an extension module SID.
fn resolve_absolute(kind: Kind, sid: i128, value: &Value) -> Target {
    let delta = sid - i128::from(kind.sid());
    let target = resolve_delta(kind, delta);
    match (&target, u64::try_from(sid), value) {
        (Target::Unknown { .. }, Ok(sid), Value::Map(_)) => Target::Extension(Extension::Sid(sid)),
        _ => target,
    }
}

fn resolve_name(kind: Kind, name: &str) -> Target {
    if let Some(module) = name.strip_prefix(EXTENSION_PREFIX) {
        return Target::Extension(Extension::Name(module.to_string()));
    }
    match Leaf::by_name(kind, name) {
        Some(leaf) => Target::Leaf(leaf),
        None => {
            Target::Unknown { label: name.to_string(), error: VoucherError::UnknownLeaf(name.to_string()) }
        }
    }
}

fn read_entry(
    voucher: &mut Voucher,
    target: Target,
    value: Value,
    strictness: Strictness,
) -> Result<(), VoucherError> {
    match target {
        Target::Leaf(leaf) => voucher.read_leaf(leaf, &CborLeaf(&value)),
        Target::Extension(ext) => {
            unique_keys(&value, &Target::Extension(ext.clone()).label())?;
            voucher.cbor_extension_data.insert(ext, value);
            Ok(())
        }
        Target::Unknown { error, .. } if strictness == Strictness::Strict => Err(error),
        Target::Unknown { label, .. } => {
            voucher.unknown_leaves.push(label);
            Ok(())
        }
    }
}

/// Refuses duplicate keys in any map nested in `value` (extension sub-maps are kept verbatim).
fn unique_keys(value: &Value, context: &str) -> Result<(), VoucherError> {
    match value {
        Value::Map(entries) => {
            let mut seen = HashSet::new();
            for (key, inner) in entries {
                let path = format!("{context}/{}", describe(key));
                if !seen.insert(encode(key)) {
                    return Err(VoucherError::DuplicateLeaf(path));
                }
                unique_keys(inner, &path)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|i| unique_keys(i, context)),
        Value::Tag(_, inner) => unique_keys(inner, context),
        _ => Ok(()),
    }
}

fn wrong_type(leaf: &str, expected: &'static str) -> VoucherError {
    VoucherError::WrongType { leaf: leaf.to_string(), expected }
}

/// One CBOR map value, read as a typed leaf.
struct CborLeaf<'a>(&'a Value);

fn extension_entry(leaf: Leaf, item: &Value) -> Result<Extension, VoucherError> {
    let expected = "array of unsigned integers or text strings";
    match item {
        Value::Text(name) => Ok(Extension::Name(name.clone())),
        Value::Integer(i) => {
            u64::try_from(*i).map(Extension::Sid).map_err(|_| wrong_type(leaf.name(), expected))
        }
        _ => Err(wrong_type(leaf.name(), expected)),
    }
}

impl LeafReader for CborLeaf<'_> {
    fn text(&self, leaf: Leaf) -> Result<String, VoucherError> {
        self.0.as_text().map(str::to_owned).ok_or_else(|| wrong_type(leaf.name(), "text string"))
    }

    fn binary(&self, leaf: Leaf) -> Result<Vec<u8>, VoucherError> {
        self.0.as_bytes().cloned().ok_or_else(|| wrong_type(leaf.name(), "byte string"))
    }

    fn binary_list(&self, leaf: Leaf) -> Result<Vec<Vec<u8>>, VoucherError> {
        match self.0 {
            Value::Bytes(one) => Ok(vec![one.clone()]),
            Value::Array(items) => items.iter().map(|i| CborLeaf(i).binary(leaf)).collect(),
            _ => Err(wrong_type(leaf.name(), "byte string or array of them")),
        }
    }

    fn boolean(&self, leaf: Leaf) -> Result<bool, VoucherError> {
        self.0.as_bool().ok_or_else(|| wrong_type(leaf.name(), "boolean"))
    }

    fn date(&self, leaf: Leaf) -> Result<OffsetDateTime, VoucherError> {
        let text = self.text(leaf)?;
        rfc3339::parse(&text)
            .map_err(|_| VoucherError::InvalidDate { leaf: leaf.name().to_string(), value: text })
    }

    /// The enum's integer, or (names being legal in YANG-CBOR) its name.
    fn assertion(&self, leaf: Leaf) -> Result<Assertion, VoucherError> {
        let (found, shown) = match self.0 {
            Value::Integer(i) => (Assertion::from_value(i128::from(*i)), i128::from(*i).to_string()),
            Value::Text(t) => (Assertion::from_name(t), format!("\"{t}\"")),
            _ => return Err(wrong_type(leaf.name(), "enumeration integer")),
        };
        found.ok_or_else(|| VoucherError::InvalidEnum { leaf: leaf.name().to_string(), value: shown })
    }

    /// A byte string as sent; a text string is kept in text form (see [`to_cbor`]).
    fn nonce(&self, leaf: Leaf) -> Result<Nonce, VoucherError> {
        match self.0 {
            Value::Bytes(b) => Ok(Nonce::from_bytes(b)),
            Value::Text(t) => Ok(Nonce::from_text(t.clone())),
            _ => Err(wrong_type(leaf.name(), "byte string")),
        }
    }

    fn extensions(&self, leaf: Leaf) -> Result<Vec<Extension>, VoucherError> {
        let Value::Array(items) = self.0 else {
            return Err(wrong_type(leaf.name(), "array of unsigned integers or text strings"));
        };
        items.iter().map(|i| extension_entry(leaf, i)).collect()
    }
}

/// Produces YANG-CBOR data items.
struct CborWriter;

impl LeafWriter for CborWriter {
    type Item = Value;

    fn text(&self, value: &str) -> Value {
        Value::Text(value.to_owned())
    }

    fn binary(&self, value: &[u8]) -> Value {
        Value::Bytes(value.to_vec())
    }

    /// Always an array of byte strings (mirrors the BRSKI-PRM JSON array).
    fn binary_list(&self, value: &[Vec<u8>]) -> Value {
        Value::Array(value.iter().map(|c| self.binary(c)).collect())
    }

    fn boolean(&self, value: bool) -> Value {
        Value::Bool(value)
    }

    fn date(&self, value: &OffsetDateTime) -> Value {
        Value::Text(rfc3339::format(value))
    }

    fn assertion(&self, value: Assertion) -> Value {
        Value::Integer(Integer::from(value as u8))
    }

    fn nonce(&self, value: &Nonce) -> Value {
        match value.decoded() {
            Some(bytes) => Value::Bytes(bytes),
            None => Value::Text(value.json_text()),
        }
    }

    fn extensions(&self, value: &[Extension]) -> Value {
        let item = |e: &Extension| match e {
            Extension::Name(n) => Value::Text(n.clone()),
            Extension::Sid(s) => Value::from(*s),
        };
        Value::Array(value.iter().map(item).collect())
    }
}
