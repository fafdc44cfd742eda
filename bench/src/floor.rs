//! The floor: a hand-written minimal multiplexed request/response protocol,
//! the yardstick for what any RPC layer over these sockets must at least cost.
//!
//! Wire: each frame is a little-endian `u32` length followed by that many
//! bytes of postcard `(id: u64, method: u8, payload)`. A reply echoes the id
//! and the method byte and carries the result as payload.
//!
//! Streams: a `STREAM` call with arguments `(n: u32, size: u32)` is answered
//! by `n` `ITEM` frames and then one `END` frame, all under the call's id.
//! An `ITEM` frame is the header `(id, ITEM)` followed by the item's bytes
//! as they are, to the end of the frame; `END` has no payload.
//!
//! Each side runs one reader task and one writer task per connection. The
//! writer drains everything queued since its last wake-up into one buffer
//! and issues one write for it. The client keeps a map id → oneshot of calls
//! in flight; the server handles each request inline in its reader (they are
//! trivial) and queues the reply for its writer. The server's writer sends
//! the open streams itself: after the queued frames, one item of each
//! stream in turn, copied from one template into its reused buffer, up to
//! 64 KiB a write. The client's reader checks and counts each item where it
//! decodes it, in its reused frame buffer. There is no handshake, no
//! cancellation, no timeouts, no flow control (a stream is held back only
//! by the socket), no backpressure beyond the callers' own concurrency, and
//! nothing else.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::FutureExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::harness::{item_bytes, Backend, BoxError, Client, Control, Endpoint, StreamClient};

/// Method byte of `add(a: i32, b: i32) -> i32`.
const ADD: u8 = 1;
/// Method byte of `echo(data: Vec<u8>) -> Vec<u8>`.
const ECHO: u8 = 2;
/// Method byte of `chunks(n: u32, size: u32)`, which returns a stream.
const STREAM: u8 = 3;
/// Method byte of a stream's item.
const ITEM: u8 = 4;
/// Method byte of a stream's end.
const END: u8 = 5;
/// Bytes of stream frames the server's writer puts in one write (more when
/// one item is larger).
const STREAM_BATCH: usize = 64 * 1024;
/// Largest frame body accepted, so a bad length cannot make us allocate
/// without bound.
const MAX_FRAME: usize = 16 << 20;

/// The floor implementation, as a [`Backend`].
pub(crate) struct Floor;

/// Encodes one whole frame (length prefix included) into a fresh buffer.
fn encode<T: Serialize>(id: u64, method: u8, payload: &T) -> Result<Vec<u8>, postcard::Error> {
    let mut buf = postcard::to_extend(&(id, method, payload), vec![0u8; 4])?;
    let len = u32::try_from(buf.len() - 4).map_err(|_| postcard::Error::SerializeBufferFull)?;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    Ok(buf)
}

/// Appends one frame to `out`: the length prefix, the header `(id, method)`
/// as postcard encodes it, and `body` as it is.
fn put_frame(out: &mut Vec<u8>, id: u64, method: u8, body: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    // postcard's u64: LEB128, 7 bits a byte, low bits first.
    let mut v = id;
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
    out.push(method);
    out.extend_from_slice(body);
    let len = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// Reads one frame body into `buf`. Returns `false` on a clean end of stream
/// before a frame starts.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "frame too large",
        ));
    }
    buf.resize(len, 0);
    r.read_exact(buf).await?;
    Ok(true)
}

/// What a connection's writer task is given.
enum Out {
    /// One whole frame.
    Frame(Vec<u8>),
    /// A stream to send: `n` items of `size` bytes, then its end, under
    /// call `id`.
    Stream { id: u64, n: u32, size: u32 },
}

/// The streams a server connection is sending, served round-robin.
#[derive(Default)]
struct Outgoing {
    /// Each open stream: call id, items left, item size.
    open: Vec<(u64, u32, usize)>,
    /// The stream whose item goes next.
    next: usize,
    /// The bytes of an item, as long as the longest one asked for.
    item: Vec<u8>,
}

impl Outgoing {
    /// Opens stream `id` of `n` items of `size` bytes.
    fn open(&mut self, id: u64, n: u32, size: u32) {
        let size = (size as usize).min(MAX_FRAME - 16);
        if self.item.len() < size {
            self.item = item_bytes(size);
        }
        self.open.push((id, n, size));
    }

    /// Appends frames of the open streams to `out`, one item of each in
    /// turn, until `out` holds `limit` bytes or every stream has ended
    /// (a stream with no items left gets its end frame and closes).
    fn fill(&mut self, out: &mut Vec<u8>, limit: usize) {
        while out.len() < limit && !self.open.is_empty() {
            if self.next >= self.open.len() {
                self.next = 0;
            }
            let (id, left, size) = &mut self.open[self.next];
            if *left == 0 {
                put_frame(out, *id, END, &[]);
                self.open.swap_remove(self.next);
                continue;
            }
            put_frame(out, *id, ITEM, &self.item[..*size]);
            *left -= 1;
            self.next += 1;
        }
    }
}

/// The writer task: waits for queued frames, then writes everything queued
/// so far with a single `write_all`. While streams are open it does not
/// wait: each write takes what is queued, then stream frames up to
/// [`STREAM_BATCH`].
async fn writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut queued = Vec::with_capacity(64);
    let mut out = Vec::with_capacity(16 * 1024);
    let mut streams = Outgoing::default();
    loop {
        if streams.open.is_empty() {
            if rx.recv_many(&mut queued, 1024).await == 0 {
                return;
            }
        } else {
            while queued.len() < 1024 {
                let Ok(next) = rx.try_recv() else { break };
                queued.push(next);
            }
        }
        out.clear();
        for next in queued.drain(..) {
            match next {
                Out::Frame(f) => out.extend_from_slice(&f),
                Out::Stream { id, n, size } => streams.open(id, n, size),
            }
        }
        streams.fill(&mut out, STREAM_BATCH);
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Calls in flight on one connection: id → where its reply goes.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

/// A stream being read on a client connection.
struct Sink {
    /// Where its items are counted.
    ctl: Arc<Control>,
    /// The size every item must have.
    size: usize,
    /// Items read so far.
    read: u64,
    /// The size of the first item that did not have `size` bytes.
    wrong: Option<usize>,
    /// Told the outcome at its end.
    done: oneshot::Sender<Result<u64, String>>,
}

/// Streams asked for on one connection whose first frame has not arrived:
/// id → its sink. The reader moves each into a table of its own on its
/// first frame.
type Opening = Arc<Mutex<HashMap<u64, Sink>>>;

/// A client connection of the floor. Clones share the connection.
#[derive(Clone)]
pub(crate) struct FloorClient {
    /// State shared by clones and the reader task.
    inner: Arc<Inner>,
}

/// The shared state of a [`FloorClient`].
struct Inner {
    /// The next call id.
    next_id: AtomicU64,
    /// Calls waiting for their reply. Locked only for an insert or a remove,
    /// never across an await.
    pending: Pending,
    /// Streams asked for, not yet started. Locked as `pending` is.
    opening: Opening,
    /// The writer task's queue.
    tx: mpsc::UnboundedSender<Out>,
}

impl FloorClient {
    /// Starts the reader and writer tasks of a client over the two halves of
    /// a connected socket.
    fn start<R, W>(r: R, w: W) -> Self
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();
        let opening: Opening = Arc::default();
        tokio::spawn(writer(w, rx));
        tokio::spawn(client_reader(r, pending.clone(), opening.clone()));
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                pending,
                opening,
                tx,
            }),
        }
    }

    /// Sends one call and waits for its reply payload.
    async fn call<A: Serialize, T: DeserializeOwned>(
        &self,
        method: u8,
        args: &A,
    ) -> Result<T, BoxError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, method, args)?;
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending lock")
            .insert(id, tx);
        if self.inner.tx.send(Out::Frame(frame)).is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&id);
            return Err("connection closed".into());
        }
        let payload = rx.await.map_err(|_| "connection closed")?;
        Ok(postcard::from_bytes(&payload)?)
    }
}

/// The client's reader task: routes each reply payload to its caller, and
/// checks and counts each stream item in place. On end of stream or error
/// it drops every pending sender and sink, failing those calls and streams.
async fn client_reader<R: AsyncRead + Unpin>(r: R, pending: Pending, opening: Opening) {
    let mut r = BufReader::with_capacity(64 * 1024, r);
    let mut buf = Vec::new();
    let mut reading: HashMap<u64, Sink> = HashMap::new();
    while let Ok(true) = read_frame(&mut r, &mut buf).await {
        let Ok(((id, method), payload)) = postcard::take_from_bytes::<(u64, u8)>(&buf) else {
            break;
        };
        match method {
            ITEM => {
                let sink = match reading.entry(id) {
                    Entry::Occupied(e) => e.into_mut(),
                    Entry::Vacant(e) => match opening.lock().expect("opening lock").remove(&id) {
                        Some(sink) => e.insert(sink),
                        None => continue,
                    },
                };
                if payload.len() != sink.size {
                    sink.wrong.get_or_insert(payload.len());
                }
                sink.ctl.count_item(payload.len());
                sink.read += 1;
            }
            END => {
                let sink = reading
                    .remove(&id)
                    .or_else(|| opening.lock().expect("opening lock").remove(&id));
                if let Some(sink) = sink {
                    let outcome = match sink.wrong {
                        None => Ok(sink.read),
                        Some(len) => Err(format!(
                            "a stream item of {len} bytes, {} expected",
                            sink.size
                        )),
                    };
                    let _ = sink.done.send(outcome);
                }
            }
            _ => {
                let waiter = pending.lock().expect("pending lock").remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(payload.to_vec());
                }
            }
        }
    }
    pending.lock().expect("pending lock").clear();
    opening.lock().expect("opening lock").clear();
}

impl Client for FloorClient {
    async fn add(&self, a: i32, b: i32) -> Result<i32, BoxError> {
        self.call(ADD, &(a, b)).await
    }

    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        self.call(ECHO, &data).await
    }
}

impl StreamClient for FloorClient {
    async fn read_stream(&self, n: u32, size: u32, ctl: &Arc<Control>) -> Result<u64, BoxError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = encode(id, STREAM, &(n, size))?;
        let (done, ended) = oneshot::channel();
        let sink = Sink {
            ctl: ctl.clone(),
            size: size as usize,
            read: 0,
            wrong: None,
            done,
        };
        self.inner
            .opening
            .lock()
            .expect("opening lock")
            .insert(id, sink);
        if self.inner.tx.send(Out::Frame(frame)).is_err() {
            self.inner.opening.lock().expect("opening lock").remove(&id);
            return Err("connection closed".into());
        }
        Ok(ended.await.map_err(|_| "connection closed")??)
    }
}

/// Serves one connection: decodes each request, computes the reply inline
/// and queues it for the writer task.
async fn serve_conn<R, W>(r: R, w: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(writer(w, rx));
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    while let Ok(true) = read_frame(&mut r, &mut buf).await {
        let Ok(((id, method), args)) = postcard::take_from_bytes::<(u64, u8)>(&buf) else {
            break;
        };
        let reply = match method {
            ADD => match postcard::from_bytes::<(i32, i32)>(args) {
                Ok((a, b)) => encode(id, method, &a.wrapping_add(b)).map(Out::Frame),
                Err(_) => break,
            },
            ECHO => match postcard::from_bytes::<Vec<u8>>(args) {
                Ok(data) => encode(id, method, &data).map(Out::Frame),
                Err(_) => break,
            },
            STREAM => match postcard::from_bytes::<(u32, u32)>(args) {
                Ok((n, size)) => Ok(Out::Stream { id, n, size }),
                Err(_) => break,
            },
            _ => break,
        };
        let Ok(reply) = reply else { break };
        if tx.send(reply).is_err() {
            break;
        }
    }
}

impl Backend for Floor {
    const NAME: &'static str = "floor";
    type Client = FloorClient;

    async fn bind(listen: &Endpoint) -> Result<(Endpoint, BoxFuture<'static, ()>), BoxError> {
        match listen {
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(addr).await?;
                let local = Endpoint::Tcp(listener.local_addr()?);
                let accept = async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        let (r, w) = stream.into_split();
                        tokio::spawn(serve_conn(r, w));
                    }
                };
                Ok((local, accept.boxed()))
            }
            Endpoint::Unix(path) => {
                let listener = UnixListener::bind(path)?;
                let local = Endpoint::Unix(path.clone());
                let accept = async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let (r, w) = stream.into_split();
                        tokio::spawn(serve_conn(r, w));
                    }
                };
                Ok((local, accept.boxed()))
            }
            Endpoint::Tls { addr, .. } => {
                let listener = TcpListener::bind(addr).await?;
                let local = Endpoint::Tls {
                    addr: listener.local_addr()?,
                    ca: Vec::new(),
                };
                let acceptor = crate::tls::acceptor()?;
                let accept = async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let _ = stream.set_nodelay(true);
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            if let Ok(tls) = acceptor.accept(stream).await {
                                let (r, w) = tokio::io::split(tls);
                                serve_conn(r, w).await;
                            }
                        });
                    }
                };
                Ok((local, accept.boxed()))
            }
        }
    }

    async fn connect(addr: &Endpoint) -> Result<FloorClient, BoxError> {
        match addr {
            Endpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await?;
                stream.set_nodelay(true)?;
                let (r, w) = stream.into_split();
                Ok(FloorClient::start(r, w))
            }
            Endpoint::Unix(path) => {
                let (r, w) = UnixStream::connect(path).await?.into_split();
                Ok(FloorClient::start(r, w))
            }
            Endpoint::Tls { addr, ca } => {
                let tls = crate::tls::connect(*addr, ca, true).await?;
                let (r, w) = tokio::io::split(tls);
                Ok(FloorClient::start(r, w))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_frame_writes_what_the_reader_decodes() {
        for id in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut out = vec![9];
            put_frame(&mut out, id, ITEM, b"abc");
            let len = u32::from_le_bytes(out[1..5].try_into().unwrap()) as usize;
            assert_eq!(len, out.len() - 5);
            let ((got, method), body) = postcard::take_from_bytes::<(u64, u8)>(&out[5..]).unwrap();
            assert_eq!((got, method, body), (id, ITEM, &b"abc"[..]));
        }
    }

    #[test]
    fn streams_are_interleaved_and_ended() {
        let mut streams = Outgoing::default();
        streams.open(1, 2, 3);
        streams.open(2, 1, 3);
        let mut out = Vec::new();
        streams.fill(&mut out, usize::MAX);
        let mut frames = Vec::new();
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            let ((id, method), body) =
                postcard::take_from_bytes::<(u64, u8)>(&rest[4..4 + len]).unwrap();
            frames.push((id, method, body.len()));
            rest = &rest[4 + len..];
        }
        assert_eq!(
            frames,
            [
                (1, ITEM, 3),
                (2, ITEM, 3),
                (1, ITEM, 3),
                (2, END, 0),
                (1, END, 0)
            ]
        );
        assert!(streams.open.is_empty());
    }
}
