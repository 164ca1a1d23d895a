//! The voucher vocabulary (RFC 8366bis, RFC 8995): which YANG structure a payload is
//! ([`Kind`]), the `assertion` enumeration ([`Assertion`]) and the `extensions` leaf-list
//! entries ([`Extension`]). Plain names and numbers, below the model, the leaves and the errors
//! that all speak them.

use std::fmt;

/// Which of the two YANG structures the data is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Kind {
    /// `ietf-voucher:voucher` (CBOR SID 2451): issued by a MASA.
    #[default]
    Voucher,
    /// `ietf-voucher-request:voucher` (CBOR SID 2501): sent by a pledge or a registrar.
    Request,
}

impl Kind {
    /// The RFC 7951 top-level member name.
    pub fn json_key(self) -> &'static str {
        match self {
            Kind::Voucher => "ietf-voucher:voucher",
            Kind::Request => "ietf-voucher-request:voucher",
        }
    }

    /// The SID of the container; inner CBOR keys are deltas from it.
    pub fn sid(self) -> u64 {
        match self {
            Kind::Voucher => 2451,
            Kind::Request => 2501,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Voucher => "voucher",
            Kind::Request => "voucher-request",
        })
    }
}

/// The top-level member name used by BRSKI-PRM's published examples; read as a request.
pub const LEGACY_PRM_JSON_KEY: &str = "ietf-voucher-request-prm:voucher";

/// The `assertion` enumeration (rfc8366bis): how the MASA verified ownership, or (in a request)
/// what the requester can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Assertion {
    /// `verified` (CBOR 0)
    Verified = 0,
    /// `logged` (CBOR 1)
    Logged = 1,
    /// `proximity` (CBOR 2)
    Proximity = 2,
    /// `agent-proximity` (CBOR 3, BRSKI-PRM)
    AgentProximity = 3,
}

impl Assertion {
    pub(super) const ALL: [Assertion; 4] =
        [Assertion::Verified, Assertion::Logged, Assertion::Proximity, Assertion::AgentProximity];

    /// The enum name used in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Assertion::Verified => "verified",
            Assertion::Logged => "logged",
            Assertion::Proximity => "proximity",
            Assertion::AgentProximity => "agent-proximity",
        }
    }

    /// The enum for a JSON name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The enum for a CBOR integer.
    pub fn from_value(value: i128) -> Option<Self> {
        Self::ALL.into_iter().find(|a| *a as i128 == value)
    }
}

impl fmt::Display for Assertion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of the `extensions` leaf-list: a module name (JSON) or module SID (CBOR).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Extension {
    /// Extension module name, as registered in IANA "Voucher Extensions".
    Name(String),
    /// Extension module SID.
    Sid(u64),
}
