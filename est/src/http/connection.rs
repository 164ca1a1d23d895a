//! What a handler knows of the connection its request arrived on ([`ConnectionInfo`]: peer
//! address, TLS client chain, RFC 9266 `tls-exporter`, version, ALPN), and the one rule for
//! reading the client's certificate chain ([`ConnectionInfo::peer_chain`]) that every server
//! applies: the chain is taken whole or refused whole (RFC 8446 §4.4.2 `certificate_list`,
//! RFC 5246 §7.4.2), never with its unparsable members silently dropped, because a dropped
//! member changes which path a later check builds.

use crate::binding::exporter_value;
use rustls_pki_types::CertificateDer;
use std::net::SocketAddr;
use x509_cert::Certificate;

/// TLS facts of the connection a request arrived on, inserted by [`serve`](super::serve) as an
/// `Extension<Arc<ConnectionInfo>>` into every request. The default (no TLS facts at all) is
/// what a handler sees when the router is served without [`serve`](super::serve).
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// The peer's address.
    pub remote: Option<SocketAddr>,
    /// The client certificate chain as sent (leaf first), unvalidated; empty without one.
    pub peer_certs: Vec<CertificateDer<'static>>,
    /// RFC 9266 `tls-exporter` (32 bytes). TLS 1.2 connections always have Extended Master
    /// Secret here ([`server_tls_config`](super::server_tls_config) requires it), so the
    /// value is sound on both versions.
    pub exporter: Option<[u8; 32]>,
    /// The negotiated TLS version.
    pub protocol: Option<rustls::ProtocolVersion>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
}

impl ConnectionInfo {
    /// Facts of a rustls server connection after its handshake.
    pub fn from_connection(conn: &rustls::ServerConnection, remote: Option<SocketAddr>) -> Self {
        ConnectionInfo {
            remote,
            peer_certs: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            exporter: exporter_value(conn),
            protocol: conn.protocol_version(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        }
    }
}

/// A client certificate chain with a member that is not an X.509 certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TLS client certificate #{index} (0 is the leaf) is not an X.509 certificate: {reason}")]
pub struct PeerChainError {
    /// Its position in the chain as sent.
    pub index: usize,
    /// Why it does not parse.
    pub reason: String,
}

impl ConnectionInfo {
    /// The client certificate chain as sent, parsed: leaf first, empty when the client sent
    /// none. One member that does not parse refuses the whole chain (the caller answers as for
    /// an unacceptable certificate); signatures, names and validity are the caller's checks.
    pub fn peer_chain(&self) -> Result<Vec<Certificate>, PeerChainError> {
        self.peer_certs
            .iter()
            .enumerate()
            .map(|(index, c)| {
                shared::pki::cert_from_der(c.as_ref())
                    .map_err(|e| PeerChainError { index, reason: e.to_string() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::keys::{Algorithm, SoftwareKey};
    use std::time::Duration;

    fn der() -> CertificateDer<'static> {
        let key = SoftwareKey::generate(Algorithm::Es256).unwrap();
        let ca = shared::pki::create_ca("CN=t", &key, Duration::from_secs(60), None).unwrap();
        CertificateDer::from(shared::pki::cert_to_der(&ca).unwrap())
    }

    fn with(peer_certs: Vec<CertificateDer<'static>>) -> ConnectionInfo {
        ConnectionInfo { peer_certs, ..ConnectionInfo::default() }
    }

    #[test]
    fn no_chain_is_empty_and_a_good_chain_is_kept_whole() {
        assert_eq!(with(vec![]).peer_chain(), Ok(vec![]));
        assert_eq!(with(vec![der(), der()]).peer_chain().unwrap().len(), 2);
    }

    /// The registrar's agent surface and the owner gateway used to drop unparsable members
    /// and go on with the rest; the BRSKI handlers treated the whole chain as absent. Both
    /// now refuse, naming the member.
    #[test]
    fn one_unparsable_member_refuses_the_chain() {
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        let err = with(vec![der(), garbage.clone()]).peer_chain().unwrap_err();
        assert_eq!(err.index, 1);
        assert_eq!(with(vec![garbage]).peer_chain().unwrap_err().index, 0);
    }
}
