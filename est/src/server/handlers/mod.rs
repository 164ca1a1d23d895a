//! The EST operations, one module each, and what they share: request/response bodies and the
//! checks on a CSR. Handlers see the [`ServerState`](crate::server::state::ServerState), never
//! the router that calls them.

pub(crate) mod body;
pub(crate) mod cacerts;
pub(crate) mod csr_checks;
pub(crate) mod csrattrs;
pub(crate) mod enroll;
pub(crate) mod serverkeygen;
