//! Cross-role suites: the only crate, besides the `brski` binary, that holds several roles at
//! once. Each file under `tests/` is one suite over real TLS on loopback, usually on a
//! [`brski::lab::Lab`] (a MASA and a registrar in-process) and, where a user would meet them,
//! real outside software (openssl, curl, SoftHSM, swtpm, PostgreSQL) found through `testkit`.
//!
//! [`agent`] is the test Identity Proxy several agent suites share.

pub mod agent;
