//! A frame-level HTTP/2 client for the abuse tests and `benches/h2abuse.rs`:
//! it writes exactly the frames it is told to, in one write if asked (the
//! `h2` crate's client is too well-behaved for floods: it keeps to the
//! server's SETTINGS_MAX_CONCURRENT_STREAMS, and a stream reset before its
//! HEADERS went out is never sent at all). A reader task answers SETTINGS
//! and PING and reports what the server sends. Self-contained: no test
//! helpers, so the bench can include it with `#[path]`.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{Mutex, mpsc},
    task::JoinHandle,
};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// HTTP/2 error codes used here.
pub const NO_ERROR: u32 = 0x0;
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// What the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Response HEADERS (or trailers) on a stream.
    Headers {
        stream: u32,
        end_stream: bool,
    },
    Data {
        stream: u32,
        len: usize,
    },
    Reset {
        stream: u32,
        code: u32,
    },
    GoAway {
        last_stream: u32,
        code: u32,
        debug: String,
    },
    /// End of file or a read error: the connection is gone.
    Closed,
}

/// One raw HTTP/2 connection.
pub struct RawH2 {
    writer: Arc<Mutex<OwnedWriteHalf>>,
    pub events: mpsc::UnboundedReceiver<Event>,
    reader: JoinHandle<()>,
    next_stream: u32,
}

impl Drop for RawH2 {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// A frame: 9-byte header, then the payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = Vec::with_capacity(9 + payload.len());
    f.extend_from_slice(&len.to_be_bytes()[1..]);
    f.push(kind);
    f.push(flags);
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `prefix`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u32, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128) as u8 | 0x80);
        n /= 128;
    }
    out.push(n as u8);
}

/// A header block of literal fields without indexing or Huffman coding:
/// the server's HPACK decoder keeps no state for it.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// The request HEADERS of a gRPC call to `path`, with a bearer `token`
/// when given.
pub fn grpc_headers(stream: u32, path: &str, token: Option<&str>, end_stream: bool) -> Vec<u8> {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", "deskd"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    if let Some(b) = &bearer {
        fields.push(("authorization", b.as_str()));
    }
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, &header_block(&fields))
}

/// RST_STREAM with `code`.
pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A DATA frame.
pub fn data(stream: u32, payload: &[u8], end_stream: bool) -> Vec<u8> {
    frame(DATA, if end_stream { END_STREAM } else { 0 }, stream, payload)
}

impl RawH2 {
    /// Connects and sends the preface and an empty SETTINGS frame.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<RawH2> {
        Self::connect_with(addr, true).await
    }

    /// As [`RawH2::connect`], but never answers the server's PINGs.
    pub async fn connect_ignoring_pings(addr: SocketAddr) -> std::io::Result<RawH2> {
        Self::connect_with(addr, false).await
    }

    async fn connect_with(addr: SocketAddr, answer_pings: bool) -> std::io::Result<RawH2> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (read, mut write) = tcp.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        write.write_all(&hello).await?;
        let writer = Arc::new(Mutex::new(write));
        let (tx, events) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_frames(read, writer.clone(), tx, answer_pings));
        Ok(RawH2 {
            writer,
            events,
            reader,
            next_stream: 1,
        })
    }

    /// The next client stream id (odd, increasing).
    pub fn next_stream(&mut self) -> u32 {
        let id = self.next_stream;
        self.next_stream += 2;
        id
    }

    /// Writes `bytes` in one `write_all`.
    pub async fn send(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.lock().await.write_all(bytes).await
    }

    /// Waits until `pick` returns `Some` for an event, or `deadline`
    /// passes (`None`); every event seen is handed to `pick`.
    pub async fn wait_for<T>(&mut self, deadline: Instant, mut pick: impl FnMut(&Event) -> Option<T>) -> Option<T> {
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match tokio::time::timeout(left, self.events.recv()).await {
                Ok(Some(ev)) => {
                    if let Some(t) = pick(&ev) {
                        return Some(t);
                    }
                }
                // The reader ended (it reports Closed first) or time is up.
                Ok(None) | Err(_) => return None,
            }
        }
    }
}

async fn read_frames(
    mut read: OwnedReadHalf,
    writer: Arc<Mutex<OwnedWriteHalf>>,
    tx: mpsc::UnboundedSender<Event>,
    answer_pings: bool,
) {
    let mut head = [0u8; 9];
    loop {
        if read.read_exact(&mut head).await.is_err() {
            let _ = tx.send(Event::Closed);
            return;
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        if read.read_exact(&mut payload).await.is_err() {
            let _ = tx.send(Event::Closed);
            return;
        }
        let event = match kind {
            HEADERS => Some(Event::Headers {
                stream,
                end_stream: flags & END_STREAM != 0,
            }),
            DATA => Some(Event::Data { stream, len }),
            RST_STREAM if len == 4 => Some(Event::Reset {
                stream,
                code: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]),
            }),
            GOAWAY if len >= 8 => Some(Event::GoAway {
                last_stream: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
                code: u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
                debug: String::from_utf8_lossy(&payload[8..]).into_owned(),
            }),
            SETTINGS if flags & ACK == 0 => {
                let _ = writer.lock().await.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
                None
            }
            PING if flags & ACK == 0 && answer_pings => {
                let _ = writer.lock().await.write_all(&frame(PING, ACK, 0, &payload)).await;
                None
            }
            _ => None,
        };
        if let Some(ev) = event
            && tx.send(ev).is_err()
        {
            return;
        }
    }
}

/// Waits for the connection to be ended by the server: a GOAWAY (its error
/// code) or, failing that, the socket closing (`None`). `Err` when neither
/// happened by `deadline`. Counts the REFUSED_STREAM resets seen meanwhile.
pub async fn wait_until_ended(conn: &mut RawH2, deadline: Instant) -> Result<Ended, Ended> {
    let mut ended = Ended::default();
    let got = conn
        .wait_for(deadline, |ev| {
            match ev {
                Event::Reset { code, stream } if *code == REFUSED_STREAM => {
                    ended.refused += 1;
                    ended.first_refused.get_or_insert(*stream);
                }
                Event::GoAway { code, debug, .. } => {
                    ended.goaway = Some((*code, debug.clone()));
                    // A GOAWAY with an error ends the connection; a
                    // graceful one (NO_ERROR) is followed by the close.
                    if *code != NO_ERROR {
                        return Some(());
                    }
                }
                Event::Closed => {
                    ended.closed = true;
                    return Some(());
                }
                _ => {}
            }
            None
        })
        .await;
    if got.is_some() { Ok(ended) } else { Err(ended) }
}

/// How a connection ended.
#[derive(Debug, Default, Clone)]
pub struct Ended {
    /// The GOAWAY's error code and debug data.
    pub goaway: Option<(u32, String)>,
    /// The socket closed.
    pub closed: bool,
    /// REFUSED_STREAM resets seen before.
    pub refused: u32,
    /// The first stream refused.
    pub first_refused: Option<u32>,
}

/// The longest a test waits for an event it expects.
pub const EXPECT_WITHIN: Duration = Duration::from_secs(10);
