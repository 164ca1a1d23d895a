//! Reading a request body within a size limit, shared by every brski server (EST, MASA,
//! registrar), so each answers an oversize body the same way: 413, after draining enough of the
//! rest that the client reads the answer instead of a connection reset.

use axum::body::Body;
use http_body_util::BodyExt;

/// How much of an oversize body is drained before giving up on it.
const MAX_DRAIN: usize = 1024 * 1024;

/// Why a body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// More than the limit (the limit is given).
    #[error("request body exceeds the limit of {0} bytes")]
    TooLarge(usize),
    /// The transport failed.
    #[error("cannot read the request body: {0}")]
    Read(String),
}

/// Reads at most `limit` bytes of `body`. Past the limit the rest is drained (up to 1 MiB
/// more) and [`BodyError::TooLarge`] returned. Callers bound the time with their own timeout.
pub async fn read_limited(mut body: Body, limit: usize) -> Result<Vec<u8>, BodyError> {
    let mut buf = Vec::new();
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
            buf = Vec::new();
        } else {
            buf.extend_from_slice(&data);
        }
    }
    if over {
        return Err(BodyError::TooLarge(limit));
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn within_and_over_the_limit() {
        assert_eq!(read_limited(Body::from("abc"), 3).await, Ok(b"abc".to_vec()));
        assert_eq!(read_limited(Body::from("abcd"), 3).await, Err(BodyError::TooLarge(3)));
    }
}
