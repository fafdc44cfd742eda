//! The floor: a hand-written minimal multiplexed request/response protocol,
//! the yardstick for what any RPC layer over these sockets must at least cost.
//!
//! Wire: each frame is a little-endian `u32` length followed by that many
//! bytes of postcard `(id: u64, method: u8, payload)`. A reply echoes the id
//! and the method byte and carries the result as payload.
//!
//! Each side runs one reader task and one writer task per connection. The
//! writer drains everything queued since its last wake-up into one buffer
//! and issues one write for it. The client keeps a map id → oneshot of calls
//! in flight; the server handles each request inline in its reader (they are
//! trivial) and queues the reply for its writer. There is no handshake, no
//! cancellation, no timeouts, no backpressure beyond the callers' own
//! concurrency, and nothing else.

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

use crate::harness::{Backend, BoxError, Client, Endpoint};

/// Method byte of `add(a: i32, b: i32) -> i32`.
const ADD: u8 = 1;
/// Method byte of `echo(data: Vec<u8>) -> Vec<u8>`.
const ECHO: u8 = 2;
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

/// The writer task: waits for queued frames, then writes everything queued
/// so far with a single `write_all`.
async fn writer<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let mut frames = Vec::with_capacity(64);
    let mut out = Vec::with_capacity(16 * 1024);
    while rx.recv_many(&mut frames, 1024).await > 0 {
        out.clear();
        for f in frames.drain(..) {
            out.extend_from_slice(&f);
        }
        if w.write_all(&out).await.is_err() {
            return;
        }
    }
}

/// Calls in flight on one connection: id → where its reply goes.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>;

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
    /// The writer task's queue.
    tx: mpsc::UnboundedSender<Vec<u8>>,
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
        tokio::spawn(writer(w, rx));
        tokio::spawn(client_reader(r, pending.clone()));
        Self {
            inner: Arc::new(Inner {
                next_id: AtomicU64::new(1),
                pending,
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
        if self.inner.tx.send(frame).is_err() {
            self.inner.pending.lock().expect("pending lock").remove(&id);
            return Err("connection closed".into());
        }
        let payload = rx.await.map_err(|_| "connection closed")?;
        Ok(postcard::from_bytes(&payload)?)
    }
}

/// The client's reader task: routes each reply payload to its caller. On
/// end of stream or error it drops every pending sender, failing those calls.
async fn client_reader<R: AsyncRead + Unpin>(r: R, pending: Pending) {
    let mut r = BufReader::new(r);
    let mut buf = Vec::new();
    while let Ok(true) = read_frame(&mut r, &mut buf).await {
        let Ok(((id, _method), payload)) = postcard::take_from_bytes::<(u64, u8)>(&buf) else {
            break;
        };
        let waiter = pending.lock().expect("pending lock").remove(&id);
        if let Some(waiter) = waiter {
            let _ = waiter.send(payload.to_vec());
        }
    }
    pending.lock().expect("pending lock").clear();
}

impl Client for FloorClient {
    async fn add(&self, a: i32, b: i32) -> Result<i32, BoxError> {
        self.call(ADD, &(a, b)).await
    }

    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        self.call(ECHO, &data).await
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
                Ok((a, b)) => encode(id, method, &a.wrapping_add(b)),
                Err(_) => break,
            },
            ECHO => match postcard::from_bytes::<Vec<u8>>(args) {
                Ok(data) => encode(id, method, &data),
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
