//! Dialing and accepting sockets; a connected [`Socket`], whole (for TLS to
//! wrap) or split into owned halves; the [`Stream`] the protocol runs over.
//!
//! Each kind of socket is there only with its cargo feature: TCP with
//! `tcp`, Unix-domain sockets with `unix` on Unix targets. An address whose
//! kind is not built in still parses; dialing or binding it fails with
//! [`RpcError::BadAddress`] naming the missing feature.

// With no kind of socket built in, nothing here can be reached.
#![cfg_attr(
    not(any(feature = "tcp", all(unix, feature = "unix"))),
    allow(unused_variables, dead_code, clippy::drop_non_drop)
)]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

#[cfg(any(feature = "tcp", all(unix, feature = "unix")))]
use rpc_core::IoError;
use rpc_core::{AttachOptions, RpcError};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::address::Address;

/// The read half of a socket.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
/// The write half of a socket.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

/// Runs `$body` with `$s` bound to the socket inside the [`Socket`]
/// `$value`, whatever its kind (`ref` when `$value` is a reference).
macro_rules! each_socket {
    (ref $value:expr, $s:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "tcp")]
            Socket::Tcp($s) => $body,
            #[cfg(all(unix, feature = "unix"))]
            Socket::Unix($s) => $body,
            #[cfg(not(any(feature = "tcp", all(unix, feature = "unix"))))]
            Socket::None(never) => match *never {},
        }
    };
    ($value:expr, $s:ident => $body:expr) => {
        match $value {
            #[cfg(feature = "tcp")]
            Socket::Tcp($s) => $body,
            #[cfg(all(unix, feature = "unix"))]
            Socket::Unix($s) => $body,
            #[cfg(not(any(feature = "tcp", all(unix, feature = "unix"))))]
            Socket::None(never) => match never {},
        }
    };
}

/// A connected socket of either kind. TCP sockets have `TCP_NODELAY` set
/// from the start, so TLS over them gets it too. Only the kinds built in
/// are there; with none, the one variant cannot be made.
pub(crate) enum Socket {
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpStream),
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::UnixStream),
    #[cfg(not(any(feature = "tcp", all(unix, feature = "unix"))))]
    None(std::convert::Infallible),
}

impl Socket {
    #[cfg(feature = "tcp")]
    fn tcp(s: tokio::net::TcpStream) -> Socket {
        // Small calls must not wait for Nagle's algorithm.
        let _ = s.set_nodelay(true);
        Socket::Tcp(s)
    }

    /// Splits into owned halves (no lock between them).
    pub(crate) fn into_halves(self) -> (ReadHalf, WriteHalf) {
        each_socket!(self, s => {
            let (r, w) = s.into_split();
            (Box::new(r) as ReadHalf, Box::new(w) as WriteHalf)
        })
    }
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each_socket!(ref self.get_mut(), s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each_socket!(ref self.get_mut(), s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each_socket!(ref self.get_mut(), s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each_socket!(ref self, s => s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_socket!(ref self.get_mut(), s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each_socket!(ref self.get_mut(), s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The byte stream the protocol runs over once the transport has set it up
/// (a plain socket, or TLS over one), and what the transport learnt.
pub(crate) struct Stream {
    pub(crate) rd: ReadHalf,
    pub(crate) wr: WriteHalf,
    /// The verified identity of the other end, for the connection.
    pub(crate) options: AttachOptions,
    /// What a failed handshake over this stream really was.
    pub(crate) explain: Explain,
}

impl Stream {
    /// A plain socket: nothing verified.
    pub(crate) fn plain(socket: Socket) -> Stream {
        let (rd, wr) = socket.into_halves();
        Stream {
            rd,
            wr,
            options: AttachOptions::new(),
            explain: Explain::default(),
        }
    }
}

/// Turns the error of a failed protocol handshake into the transport's
/// error behind it, where the transport saw one (a TLS alert, say).
#[derive(Default)]
pub(crate) struct Explain {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsExplain>,
}

impl Explain {
    /// `e`, or what caused it.
    pub(crate) fn explain(&self, e: RpcError) -> RpcError {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.explain(e);
        }
        e
    }
}

/// How the dialing side turns a socket into the stream the protocol runs
/// over: as it is, or inside TLS.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientLayer {
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::ClientTls>,
}

impl ClientLayer {
    /// Sets up the stream over a socket just dialed to `addr`.
    pub(crate) async fn open(&self, socket: Socket, addr: &Address) -> Result<Stream, RpcError> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            return tls.connect(socket, addr).await;
        }
        let _ = addr;
        Ok(Stream::plain(socket))
    }
}

/// Why `addr` cannot be used in this build, if its kind of socket is not
/// built in.
fn not_built_in(addr: &Address) -> RpcError {
    let why = match addr {
        Address::Tcp(_) => "TCP needs the `tcp` feature of rpc-transport, which is off in this build",
        Address::Unix(_) if cfg!(unix) => {
            "Unix-domain sockets need the `unix` feature of rpc-transport, which is off in this build"
        }
        Address::Unix(_) => "Unix-domain sockets are not available on this platform",
        Address::Name(_) => {
            return RpcError::BadAddress(format!(
                "`{addr}` names a server registered with a name service, not a socket: \
                 dial it with `connect`, which looks it up"
            ))
        }
    };
    RpcError::BadAddress(format!("`{addr}`: {why}"))
}

/// Opens a socket to `addr`.
pub(crate) async fn dial(addr: &Address) -> Result<Socket, RpcError> {
    match addr {
        #[cfg(feature = "tcp")]
        Address::Tcp(hp) => {
            let s = tokio::net::TcpStream::connect(hp.as_str())
                .await
                .map_err(|e| RpcError::Io(IoError::new(format!("connecting to tcp://{hp}"), e)))?;
            Ok(Socket::tcp(s))
        }
        #[cfg(all(unix, feature = "unix"))]
        Address::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await.map_err(|e| {
                RpcError::Io(IoError::new(
                    format!("connecting to unix://{}", p.display()),
                    e,
                ))
            })?;
            Ok(Socket::Unix(s))
        }
        #[allow(unreachable_patterns)]
        other => Err(not_built_in(other)),
    }
}

/// A bound listener.
pub(crate) enum Listener {
    #[cfg(feature = "tcp")]
    Tcp(tokio::net::TcpListener),
    #[cfg(all(unix, feature = "unix"))]
    Unix(tokio::net::UnixListener),
    #[cfg(not(any(feature = "tcp", all(unix, feature = "unix"))))]
    None(std::convert::Infallible),
}

impl Listener {
    /// Binds `addr`; returns the listener and the address actually bound
    /// (with the real port when port 0 was asked for).
    pub(crate) async fn bind(addr: &Address) -> Result<(Listener, Address), RpcError> {
        if let Address::Name(name) = addr {
            return Err(RpcError::BadAddress(format!(
                "cannot bind `{addr}`: a `name://` address is looked up, never listened on; \
                 bind a `tcp://` or `unix://` address and register it under `{name}` with \
                 the name service (rpc_transport::names)"
            )));
        }
        match addr {
            #[cfg(feature = "tcp")]
            Address::Tcp(hp) => {
                let l = tokio::net::TcpListener::bind(hp.as_str())
                    .await
                    .map_err(|e| RpcError::Io(IoError::new(format!("binding tcp://{hp}"), e)))?;
                let local = l.local_addr()?;
                Ok((Listener::Tcp(l), Address::Tcp(local.to_string())))
            }
            #[cfg(all(unix, feature = "unix"))]
            Address::Unix(p) => {
                remove_stale_socket(p).await?;
                let l = tokio::net::UnixListener::bind(p).map_err(|e| {
                    RpcError::Io(IoError::new(format!("binding unix://{}", p.display()), e))
                })?;
                Ok((Listener::Unix(l), addr.clone()))
            }
            #[allow(unreachable_patterns)]
            other => Err(not_built_in(other)),
        }
    }

    /// Polls for the next connection; gives its socket and a printable
    /// description of the remote.
    fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(Socket, String)>> {
        match self {
            #[cfg(feature = "tcp")]
            Listener::Tcp(l) => l
                .poll_accept(cx)
                .map_ok(|(s, remote)| (Socket::tcp(s), remote.to_string())),
            #[cfg(all(unix, feature = "unix"))]
            Listener::Unix(l) => l
                .poll_accept(cx)
                .map_ok(|(s, _)| (Socket::Unix(s), "unix peer".to_string())),
            #[cfg(not(any(feature = "tcp", all(unix, feature = "unix"))))]
            Listener::None(never) => match *never {},
        }
    }
}
/// A listener that can be closed at once from any thread, even while a task
/// is waiting on it: dropping a `Server` frees its address before `drop`
/// returns, so the same address can be bound again right away.
pub(crate) struct SharedListener(std::sync::Mutex<Option<Listener>>);

impl SharedListener {
    pub(crate) fn new(listener: Listener) -> Self {
        SharedListener(std::sync::Mutex::new(Some(listener)))
    }

    /// The next connection, or `None` once closed. The lock is held only
    /// while polling, never across a wait.
    pub(crate) async fn accept(&self) -> io::Result<Option<(Socket, String)>> {
        std::future::poll_fn(|cx| {
            let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match &*guard {
                Some(l) => l.poll_accept(cx).map_ok(Some),
                None => Poll::Ready(Ok(None)),
            }
        })
        .await
    }

    /// Closes the listening socket now.
    pub(crate) fn close(&self) {
        let taken = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        drop(taken);
    }
}

/// A socket file left by a dead server is removed; one with a live server
/// behind it is reported as in use.
#[cfg(all(unix, feature = "unix"))]
async fn remove_stale_socket(path: &std::path::Path) -> Result<(), RpcError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match tokio::net::UnixStream::connect(path).await {
        Ok(_) => Err(RpcError::Io(IoError::new(
            format!(
                "binding unix://{}: a server is listening there",
                path.display()
            ),
            std::io::ErrorKind::AddrInUse.into(),
        ))),
        Err(_) => {
            use std::os::unix::fs::FileTypeExt;
            let meta = std::fs::symlink_metadata(path)?;
            if !meta.file_type().is_socket() {
                return Err(RpcError::Io(IoError::new(
                    format!(
                        "binding unix://{}: the file exists and is not a socket; refusing to remove it",
                        path.display()
                    ),
                    std::io::ErrorKind::AlreadyExists.into(),
                )));
            }
            tracing::debug!(path = %path.display(), "removing stale socket file");
            std::fs::remove_file(path)?;
            Ok(())
        }
    }
}
