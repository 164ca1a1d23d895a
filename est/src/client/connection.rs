//! One TLS connection to an HTTPS server of the house ([`EstConnection`]): one request and
//! response at a time (an HTTP/1.1 connection carries one exchange at a time), each under the
//! client's timeout, the response body read within [`MAX_RESPONSE`].

use super::{parse_retry_after, problem_detail, ClientError, EstClient};
use crate::binding::challenge_password_for;
use crate::wire::{self, MEDIA_PKCS10};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{HeaderName, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, RETRY_AFTER};
use hyper::{Method, Request, StatusCode};
use std::time::Duration;
use x509_cert::Certificate;

/// Largest response body the client reads.
const MAX_RESPONSE: usize = 256 * 1024;

/// The HTTP/1.1 or h2 sender of a connection.
pub(super) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
}

/// One TLS connection to an EST server.
pub struct EstConnection {
    sender: Sender,
    exporter: Option<Vec<u8>>,
    server_chain: Vec<Certificate>,
    client: EstClient,
}

/// The answer to a [`EstConnection::post_raw`] request, for protocols other than EST on the
/// same connection (BRSKI's voucher request and status reports).
#[derive(Debug, Clone)]
pub struct RawReply {
    /// HTTP status.
    pub status: StatusCode,
    /// Content-Type (lower-cased), empty when absent.
    pub content_type: String,
    /// Retry-After, if sent (either form).
    pub retry_after: Option<Duration>,
    /// The body as received.
    pub body: Bytes,
}

impl RawReply {
    /// The human-readable reason of an error reply (RFC 9457 detail, or the text body).
    pub fn detail(&self) -> String {
        problem_detail(&self.content_type, &self.body)
    }
}

/// A response: status, content type, body.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) content_type: String,
    pub(super) retry_after: Option<Duration>,
    pub(super) body: Bytes,
}

impl EstConnection {
    /// A connection over `sender`, made by `client`.
    pub(super) fn new(
        sender: Sender,
        exporter: Option<Vec<u8>>,
        server_chain: Vec<Certificate>,
        client: EstClient,
    ) -> Self {
        EstConnection { sender, exporter, server_chain, client }
    }

    /// The RFC 9266 tls-exporter of this connection (None when TLS 1.2 without EMS).
    pub fn tls_exporter(&self) -> Option<&[u8]> {
        self.exporter.as_deref()
    }

    /// The challengePassword value that binds a CSR to this connection (base64 exporter).
    pub fn channel_binding(&self) -> Option<String> {
        self.exporter.as_deref().map(challenge_password_for)
    }

    /// The certificate chain the server presented on this connection (end entity first), as
    /// sent and not validated beyond what the trust mode did (a BRSKI pledge checks it against
    /// the voucher's pin afterwards).
    pub fn server_chain(&self) -> &[Certificate] {
        &self.server_chain
    }

    /// POSTs `body` as is (no base64) to the absolute `path` on this connection, e.g.
    /// `/.well-known/brski/requestvoucher`, with `content_type` and an optional `accept`.
    pub async fn post_raw(
        &mut self,
        path: &str,
        content_type: &str,
        accept: Option<&str>,
        body: Vec<u8>,
    ) -> Result<RawReply, ClientError> {
        let mut headers = vec![(CONTENT_TYPE, content_type.to_string())];
        if let Some(a) = accept {
            headers.push((ACCEPT, a.to_string()));
        }
        let r = self.exchange(Method::POST, path, headers, Bytes::from(body)).await?;
        Ok(RawReply {
            status: r.status,
            content_type: r.content_type,
            retry_after: r.retry_after,
            body: r.body,
        })
    }

    /// GETs the absolute `path` on this connection (for protocols other than EST on the same
    /// connection, e.g. the agent issuance endpoints), with an optional `accept`.
    pub async fn get_raw(&mut self, path: &str, accept: Option<&str>) -> Result<RawReply, ClientError> {
        let headers = accept.map(|a| vec![(ACCEPT, a.to_string())]).unwrap_or_default();
        let r = self.exchange(Method::GET, path, headers, Bytes::new()).await?;
        Ok(RawReply {
            status: r.status,
            content_type: r.content_type,
            retry_after: r.retry_after,
            body: r.body,
        })
    }

    /// Whether the connection is closed (by the server, or after an error): a kept-alive
    /// connection is reused only while this is false.
    pub fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// HTTP version in use.
    pub fn is_http2(&self) -> bool {
        matches!(self.sender, Sender::H2(_))
    }

    /// One EST operation (`op` under the client's base path), the CSR as a base64 body.
    pub(super) async fn send(
        &mut self,
        method: Method,
        op: &str,
        csr: Option<&[u8]>,
    ) -> Result<Reply, ClientError> {
        let body = csr.map(|d| Bytes::from(wire::encode_body(d))).unwrap_or_default();
        let headers = if csr.is_some() { vec![(CONTENT_TYPE, MEDIA_PKCS10.to_string())] } else { Vec::new() };
        let path = format!("{}/{op}", self.client.base_path);
        self.exchange(method, &path, headers, body).await
    }

    /// One request/response on this connection, under the client's timeout.
    async fn exchange(
        &mut self,
        method: Method,
        path: &str,
        headers: Vec<(HeaderName, String)>,
        body: Bytes,
    ) -> Result<Reply, ClientError> {
        let c = &self.client;
        let authority = if c.host.contains(':') {
            format!("[{}]:{}", c.host, c.port)
        } else {
            format!("{}:{}", c.host, c.port)
        };
        let mut req = Request::builder().method(method).uri(format!("https://{authority}{path}"));
        if matches!(self.sender, Sender::H1(_)) {
            req = req.header(HOST, authority.as_str());
        }
        for (name, value) in headers {
            req = req.header(name, value);
        }
        if let Some(b) = &c.basic {
            req = req.header(AUTHORIZATION, b.clone());
        }
        let req = req.body(Full::new(body)).map_err(|e| ClientError::Http(e.to_string()))?;
        let fut = async {
            // Wait until the connection can take the request: after a response, an HTTP/1.1
            // connection's task still has to finish that message, and a request sent before
            // then is refused ("connection was not ready").
            let resp = match &mut self.sender {
                Sender::H1(s) => match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                },
                Sender::H2(s) => match s.ready().await {
                    Ok(()) => s.send_request(req).await,
                    Err(e) => Err(e),
                },
            }
            .map_err(|e| ClientError::Http(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| ClientError::Http(e.to_string()))?
                .to_bytes();
            let header =
                |n| parts.headers.get(n).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
            Ok(Reply {
                status: parts.status,
                content_type: header(CONTENT_TYPE).unwrap_or_default().to_ascii_lowercase(),
                retry_after: header(RETRY_AFTER).and_then(|v| parse_retry_after(&v)),
                body,
            })
        };
        tokio::time::timeout(c.timeout, fut).await.map_err(|_| ClientError::Timeout("EST request"))?
    }
}
