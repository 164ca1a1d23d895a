//! JSON parsing that sees every member name.
//!
//! `serde_json::Value` silently keeps the last of two equal member names, which would let an
//! attacker smuggle a second `nonce` past a checker that reads the first. This parser builds its
//! own tree (keeping duplicates), then converts it to a `serde_json::Value` and refuses any
//! object in which a member name repeats, at any depth.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::error::VoucherError;

/// A parsed JSON value whose objects keep every member, duplicates included.
enum Node {
    Scalar(Value),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
}

/// Parses `bytes` as one JSON value, rejecting duplicated member names at any depth.
pub(crate) fn parse(bytes: &[u8]) -> Result<Value, VoucherError> {
    let node: Node = serde_json::from_slice(bytes).map_err(|e| VoucherError::MalformedJson(e.to_string()))?;
    node.into_value()
}

impl Node {
    fn into_value(self) -> Result<Value, VoucherError> {
        match self {
            Node::Scalar(v) => Ok(v),
            Node::Array(items) => {
                items.into_iter().map(Node::into_value).collect::<Result<_, _>>().map(Value::Array)
            }
            Node::Object(members) => object_into_value(members),
        }
    }
}

fn object_into_value(members: Vec<(String, Node)>) -> Result<Value, VoucherError> {
    let mut seen = HashSet::with_capacity(members.len());
    let mut map = Map::with_capacity(members.len());
    for (name, node) in members {
        if !seen.insert(name.clone()) {
            return Err(VoucherError::DuplicateLeaf(name));
        }
        map.insert(name, node.into_value()?);
    }
    Ok(Value::Object(map))
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Null))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Scalar(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Scalar(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Scalar(Value::String(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::new();
        while let Some((name, value)) = map.next_entry::<String, Node>()? {
            members.push((name, value));
        }
        Ok(Node::Object(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_values() {
        let v = parse(br#"{"b":1,"a":[true,null,"x\/y",-2,1.5]}"#).expect("valid");
        let keys: Vec<_> = v.as_object().expect("object").keys().cloned().collect();
        assert_eq!(keys, ["b", "a"]);
        assert_eq!(v["a"][2], "x/y");
    }

    #[test]
    fn rejects_duplicates_at_any_depth() {
        let top = parse(br#"{"a":1,"a":2}"#);
        assert_eq!(top, Err(VoucherError::DuplicateLeaf("a".into())));
        let deep = parse(br#"{"a":[{"n":1,"n":1}]}"#);
        assert_eq!(deep, Err(VoucherError::DuplicateLeaf("n".into())));
    }

    #[test]
    fn rejects_malformed_and_trailing_text() {
        assert!(matches!(parse(b"{\"a\":"), Err(VoucherError::MalformedJson(_))));
        assert!(matches!(parse(b"{} {}"), Err(VoucherError::MalformedJson(_))));
    }
}
