//! Reading a request body within a size limit and a time limit: the one reader of every brski
//! server (EST, MASA, registrar, Identity Proxy, owner gateway), so each answers an oversize,
//! slow or broken body the same way. An oversize body is drained (up to [`MAX_DRAIN`] more) so
//! the client reads the 413 instead of a connection reset (RFC 9110 §15.5.14); a body that
//! does not arrive in time is 408 (RFC 9110 §15.5.9).

use crate::http::Reason;
use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use std::time::Duration;

/// How much of an oversize body is drained before giving up on it.
pub const MAX_DRAIN: usize = 1024 * 1024;

/// Default longest wait for a whole request body.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The bounds of one body read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// Most bytes accepted.
    pub max_bytes: usize,
    /// Longest wait for the whole body.
    pub timeout: Duration,
}

impl BodyLimits {
    /// At most `max_bytes`, within [`DEFAULT_BODY_TIMEOUT`].
    pub const fn new(max_bytes: usize) -> Self {
        BodyLimits { max_bytes, timeout: DEFAULT_BODY_TIMEOUT }
    }

    /// The same size limit with another timeout.
    pub const fn with_timeout(self, timeout: Duration) -> Self {
        BodyLimits { timeout, ..self }
    }
}

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More than the limit (the limit is given).
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The whole body did not arrive within the timeout (given).
    #[error("the request body did not arrive within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The transport failed.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// The agent surface's reason for a body error (and through [`Reason::status`], its status):
/// the one table the Identity Proxy, the owner gateway and the Identity Server share.
impl From<&BodyError> for Reason {
    fn from(e: &BodyError) -> Reason {
        match e {
            BodyError::TooLarge(_) => Reason::TooLarge,
            BodyError::Timeout(_) => Reason::Timeout,
            BodyError::Read(_) => Reason::Malformed,
        }
    }
}

/// Reads `body` within `limits`. Past the size limit the rest is drained (up to [`MAX_DRAIN`]
/// more, still within the timeout) and [`BodyError::TooLarge`] returned.
pub async fn read_body(body: Body, limits: BodyLimits) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(limits.timeout, collect_limited(body, limits.max_bytes)).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::Timeout(limits.timeout)),
    }
}

async fn collect_limited(mut body: Body, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    let mut over = false;
    let mut drained = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        let Ok(data) = frame.into_data() else { continue };
        if over {
            drained += data.len();
            if drained > MAX_DRAIN {
                break;
            }
        } else if buf.len() + data.len() > limit {
            over = true;
            buf = BytesMut::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(buf.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn within_and_over_the_limit() {
        let read = |b: &'static str, n| read_body(Body::from(b), BodyLimits::new(n));
        assert_eq!(read("abc", 3).await, Ok(Bytes::from_static(b"abc")));
        assert_eq!(read("abcd", 3).await, Err(BodyError::TooLarge(3)));
        assert_eq!(read("", 0).await, Ok(Bytes::new()));
    }

    /// A body that sends one byte and then nothing, forever (a slow or stalled client).
    struct Stalled(bool);

    impl hyper::body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
            if std::mem::replace(&mut self.0, true) {
                return std::task::Poll::Pending;
            }
            std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(Bytes::from_static(b"{")))))
        }
    }

    #[tokio::test]
    async fn a_body_that_never_ends_times_out() {
        let limits = BodyLimits::new(10).with_timeout(Duration::from_millis(50));
        assert_eq!(
            read_body(Body::new(Stalled(false)), limits).await,
            Err(BodyError::Timeout(limits.timeout))
        );
    }

    #[test]
    fn the_agent_surface_maps_body_errors_alike() {
        assert_eq!(Reason::from(&BodyError::TooLarge(1)), Reason::TooLarge);
        assert_eq!(Reason::from(&BodyError::Timeout(Duration::from_secs(1))), Reason::Timeout);
        assert_eq!(Reason::from(&BodyError::Read("x".into())), Reason::Malformed);
    }
}
