//! Lingering close for the gRPC listener's connections.
//!
//! When hyper ends an HTTP/2 connection (graceful shutdown, a GOAWAY after
//! abuse, a keepalive timeout) it writes its last frames, half-closes the
//! socket and drops it. Frames the peer sent meanwhile (WINDOW_UPDATE for the
//! last DATA, a PING, a request sent before the peer saw the GOAWAY) then
//! arrive at a closed socket, and the kernel answers them with a TCP RST. A
//! peer that has not yet read everything deskd sent may lose it to that
//! reset: HAProxy did, passing on a response without its `grpc-status`
//! trailer. So a dropped connection is not closed at once: a task reads and
//! discards what still arrives until the peer closes its side too, for at
//! most [`LINGER`], as HTTP servers have long done (nginx's lingering_close).

use std::{
    io,
    pin::Pin,
    task::{Context, Poll},
    time::Duration,
};

use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
    sync::mpsc,
};
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The longest a closed connection's socket is kept to drain the peer's
/// last bytes.
pub const LINGER: Duration = Duration::from_secs(2);

/// Counts the lingering closes still running, so that the process waits for
/// them (at most [`LINGER`]) before it exits.
#[derive(Clone)]
pub struct Lingering {
    // Never sent on: the receiver sees the end when every clone is dropped.
    _tx: mpsc::Sender<()>,
}

/// Resolves when every lingering close of a [`Lingering`] has ended.
pub struct LingeringDone {
    rx: mpsc::Receiver<()>,
}

/// A tracker and the handle that waits for it.
pub fn tracker() -> (Lingering, LingeringDone) {
    let (tx, rx) = mpsc::channel(1);
    (Lingering { _tx: tx }, LingeringDone { rx })
}

impl LingeringDone {
    /// Waits until every connection accepted through the tracker (which the
    /// caller must have dropped, with the listener) has closed, for at most
    /// [`LINGER`].
    pub async fn wait(mut self) {
        let _ = tokio::time::timeout(LINGER, self.rx.recv()).await;
    }
}

/// An accepted connection that lingers when dropped.
pub struct LingeringStream {
    inner: Option<TcpStream>,
    tracker: Lingering,
}

impl Lingering {
    /// Wraps an accepted connection.
    pub fn wrap(&self, stream: TcpStream) -> LingeringStream {
        LingeringStream {
            inner: Some(stream),
            tracker: self.clone(),
        }
    }
}

fn gone() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection already closed")
}

impl LingeringStream {
    fn stream(&mut self) -> io::Result<Pin<&mut TcpStream>> {
        self.inner.as_mut().map(Pin::new).ok_or_else(gone)
    }
}

impl AsyncRead for LingeringStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for LingeringStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.stream()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.as_ref().is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream()?.poll_shutdown(cx)
    }
}

impl Connected for LingeringStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        match &self.inner {
            Some(s) => s.connect_info(),
            None => TcpConnectInfo {
                local_addr: None,
                remote_addr: None,
            },
        }
    }
}

impl Drop for LingeringStream {
    fn drop(&mut self) {
        let Some(stream) = self.inner.take() else {
            return;
        };
        // Outside a runtime (the process is ending) the socket just closes.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let tracker = self.tracker.clone();
        runtime.spawn(async move {
            linger(stream).await;
            drop(tracker);
        });
    }
}

/// Half-closes (if hyper has not) and reads until the peer closes, an error,
/// or [`LINGER`].
async fn linger(mut stream: TcpStream) {
    let _ = stream.shutdown().await;
    let mut scratch = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = stream.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use tokio::net::TcpListener;

    use super::*;

    /// A peer's late bytes do not turn the close into a reset: what the
    /// server wrote before it dropped the connection is all read back, and
    /// the stream ends with a clean end of file.
    #[tokio::test]
    async fn a_dropped_connection_drains_the_peers_late_bytes_instead_of_resetting() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        let (tracker, done) = tracker();
        let mut server = tracker.wrap(server);
        drop(tracker);
        // The client sends something the server never reads...
        client.write_all(b"late window update").await.expect("client write");
        // ...and the server answers, then drops the connection.
        server.write_all(&[7u8; 20_000]).await.expect("server write");
        server.shutdown().await.expect("half-close");
        // The late bytes reach the server's socket before it is dropped.
        client.write_all(b"more").await.expect("client write");
        tokio::task::yield_now().await;
        drop(server);
        client.write_all(b"even after the drop").await.expect("client write");
        let mut got = Vec::new();
        client
            .read_to_end(&mut got)
            .await
            .expect("a clean end of file, not a reset");
        assert_eq!(got.len(), 20_000);
        drop(client);
        tokio::time::timeout(LINGER, done.wait())
            .await
            .expect("the lingering close ends when the peer closes");
    }
}
