//! Lingering close (what nginx's `lingering_close` does): when the server ends a connection
//! while the client is still sending (a refused oversize request head, a request answered
//! before its body arrived), closing at once makes the kernel reset the connection, and a reset
//! can destroy the answer before the client reads it. [`Lingering`] wraps a connection's
//! stream; when the server is done with it, a task shuts down the sending side (TLS
//! close_notify, TCP FIN) and reads and discards what the client still sends, up to
//! [`LINGER_BYTES`] or [`LINGER_TIME`], before the socket closes.
//!
//! It also holds the connection's first-byte deadline: a client that finishes the TLS
//! handshake and then sends nothing is cut off when the deadline passes (HTTP's header timeout
//! only starts with the first byte of a request, so such connections stayed open for good).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Sleep;

/// Most bytes read and discarded after the server is done.
pub(crate) const LINGER_BYTES: usize = 1024 * 1024;
/// Longest wait for the client to stop sending.
pub(crate) const LINGER_TIME: Duration = Duration::from_secs(2);

/// A connection stream closed by lingering (see the module doc).
#[derive(Debug)]
pub(crate) struct Lingering<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> {
    inner: Option<S>,
    first_byte: Option<Pin<Box<Sleep>>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Lingering<S> {
    /// Wraps `stream`, whose client must send its first byte within `first_byte`.
    pub(crate) fn new(stream: S, first_byte: Duration) -> Self {
        Lingering { inner: Some(stream), first_byte: Some(Box::pin(tokio::time::sleep(first_byte))) }
    }

    fn stream(&mut self) -> io::Result<&mut S> {
        self.inner.as_mut().ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Drop for Lingering<S> {
    fn drop(&mut self) {
        let Some(mut s) = self.inner.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        rt.spawn(async move {
            let _ = tokio::time::timeout(LINGER_TIME, async {
                let _ = s.shutdown().await;
                let mut buf = vec![0u8; 16 * 1024];
                let mut total = 0;
                while total < LINGER_BYTES {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => total += n,
                    }
                }
            })
            .await;
        });
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncRead for Lingering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let read = match self.stream() {
            Ok(s) => Pin::new(s).poll_read(cx, buf),
            Err(e) => return Poll::Ready(Err(e)),
        };
        let Some(deadline) = self.first_byte.as_mut() else { return read };
        match read {
            Poll::Ready(Ok(())) if buf.filled().len() > before => {
                self.first_byte = None;
                Poll::Ready(Ok(()))
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                let why = "no request within the first-byte timeout";
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, why)))
            }
            other => other,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> AsyncWrite for Lingering<S> {
    /// Writes `buf`, a response head with its names in their registered spelling
    /// ([`super::spelling`]; same length, so the count written maps onto `buf`).
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let fixed = super::spelling::respelled(buf);
        match self.stream() {
            Ok(s) => Pin::new(s).poll_write(cx, fixed.as_deref().unwrap_or(buf)),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    /// Flushes but keeps the connection open for reading: the lingering task sends the
    /// close_notify and FIN when the server drops the stream.
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.stream() {
            Ok(s) => Pin::new(s).poll_flush(cx),
            Err(e) => Poll::Ready(Err(e)),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let fixed = bufs.first().and_then(|b| super::spelling::respelled(b));
        let s = match self.stream() {
            Ok(s) => s,
            Err(e) => return Poll::Ready(Err(e)),
        };
        match fixed {
            Some(head) => {
                let mut slices = vec![io::IoSlice::new(&head)];
                slices.extend(bufs[1..].iter().map(|b| io::IoSlice::new(b)));
                Pin::new(s).poll_write_vectored(cx, &slices)
            }
            None => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(|s| s.is_write_vectored())
    }
}
