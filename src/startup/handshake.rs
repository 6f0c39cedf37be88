//! A deadline for the HTTP/2 connection preface (`server.handshake_timeout`).
//!
//! hyper's HTTP/2 server has no handshake timeout, and its keepalive PINGs
//! start only once the handshake is done; TCP keepalive notices a dead peer,
//! not a silent one. So a client that opens TCP connections and never sends
//! the 24-byte preface would hold a socket and a task for each, for ever.
//! [`PrefaceDeadline`] wraps every accepted socket: until the preface's 24
//! bytes have been read, a read that is still waiting when the deadline
//! passes fails with `TimedOut`, hyper's handshake fails and the connection
//! is closed. After that it only passes bytes through; keepalive and
//! `max_connection_age` bound the connection from there on.
//!
//! `startup.rs` wraps each accepted socket (inside the lingering-close
//! wrapper of `linger.rs`) before tonic serves it.

use std::{
    future::Future,
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};
use tonic::transport::server::Connected;

/// The client's HTTP/2 connection preface, `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n`.
const PREFACE_LEN: usize = 24;

/// A socket whose first [`PREFACE_LEN`] bytes must arrive before a deadline.
pub struct PrefaceDeadline<IO> {
    io: IO,
    /// `None` once the preface's bytes are in.
    deadline: Option<Pin<Box<Sleep>>>,
    /// Preface bytes not read yet.
    awaiting: usize,
}

impl<IO> PrefaceDeadline<IO> {
    /// Starts the deadline now (call it when the connection is accepted,
    /// inside the runtime).
    pub fn new(io: IO, timeout: Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(timeout))),
            awaiting: PREFACE_LEN,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if this.deadline.is_some() {
                    this.awaiting = this.awaiting.saturating_sub(buf.filled().len() - before);
                    if this.awaiting == 0 {
                        this.deadline = None;
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Polling the timer registers this task's waker: hyper is
                // woken when it fires and reads again, getting the error.
                let expired = this.deadline.as_mut().is_some_and(|d| d.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "no HTTP/2 connection preface within server.handshake_timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for PrefaceDeadline<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for PrefaceDeadline<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn a_silent_peer_fails_the_read_at_the_deadline() {
        let (client, server) = tokio::io::duplex(64);
        let started = Instant::now();
        let mut guarded = PrefaceDeadline::new(server, Duration::from_millis(50));
        let mut buf = [0u8; 24];
        let err = guarded.read(&mut buf).await.expect_err("no bytes came");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(started.elapsed() >= Duration::from_millis(50));
        drop(client);
    }

    #[tokio::test]
    async fn a_partial_preface_is_not_enough() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = PrefaceDeadline::new(server, Duration::from_millis(50));
        client.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.expect("16 bytes"), 16);
        let err = guarded.read(&mut buf).await.expect_err("the rest never came");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn after_the_preface_a_connection_may_be_silent() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut guarded = PrefaceDeadline::new(server, Duration::from_millis(20));
        client
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .expect("write");
        let mut buf = [0u8; 64];
        assert_eq!(guarded.read(&mut buf).await.expect("the preface"), 24);
        // Well past the deadline, a read still waits for data rather than
        // failing.
        let waited = tokio::time::timeout(Duration::from_millis(100), guarded.read(&mut buf)).await;
        assert!(waited.is_err(), "the read must still be pending: {waited:?}");
        client.write_all(b"x").await.expect("write");
        assert_eq!(guarded.read(&mut buf).await.expect("a byte"), 1);
    }
}
