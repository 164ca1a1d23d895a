//! The `brski` package, floor 4 of the house: the one binary (`src/main.rs` and its `cli`
//! modules) and, as a library, [`lab`], the in-process MASA + registrar fixture that the demo,
//! the benchmarks and the cross-role suites (`e2e`) share.
//!
//! The floors below, each importing only the floors under it:
//!
//! 1. `shared`: sans-IO core (keys, PKI, CMS/JWS/COSE, vouchers, agent wire formats, the
//!    `Store` trait and its records); no sockets, no databases, no child processes.
//! 2. `est` (EST plus the house's HTTPS plumbing), `store` (SQLite and PostgreSQL stores), and
//!    the dev-only `testkit`.
//! 3. the roles, side by side, never importing each other: `masa`, `registrar`, `pledge`
//!    (the Identity Proxy), `owner`, `agent` (the AI agent's client).
//! 4. this package: command-line front end and the lab.
//!
//! What it does not do: decide anything. Every check lives in a role or below; the CLI parses
//! flags, loads files and calls into the roles.

pub mod lab;
