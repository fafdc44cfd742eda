//! Dialing and accepting sockets, split into owned halves.

use std::path::Path;

use rpc_core::{IoError, RpcError};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::address::Address;

/// The read half of a socket.
pub(crate) type ReadHalf = Box<dyn AsyncRead + Unpin + Send>;
/// The write half of a socket.
pub(crate) type WriteHalf = Box<dyn AsyncWrite + Unpin + Send>;

fn halves_tcp(s: TcpStream) -> (ReadHalf, WriteHalf) {
    // Small calls must not wait for Nagle's algorithm.
    let _ = s.set_nodelay(true);
    let (r, w) = s.into_split();
    (Box::new(r), Box::new(w))
}

fn halves_unix(s: UnixStream) -> (ReadHalf, WriteHalf) {
    let (r, w) = s.into_split();
    (Box::new(r), Box::new(w))
}

/// Opens a stream to `addr`.
pub(crate) async fn dial(addr: &Address) -> Result<(ReadHalf, WriteHalf), RpcError> {
    match addr {
        Address::Tcp(hp) => {
            let s = TcpStream::connect(hp.as_str())
                .await
                .map_err(|e| RpcError::Io(IoError::new(format!("connecting to tcp://{hp}"), e)))?;
            Ok(halves_tcp(s))
        }
        Address::Unix(p) => {
            let s = UnixStream::connect(p).await.map_err(|e| {
                RpcError::Io(IoError::new(
                    format!("connecting to unix://{}", p.display()),
                    e,
                ))
            })?;
            Ok(halves_unix(s))
        }
    }
}

/// A bound listener.
pub(crate) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    /// Binds `addr`; returns the listener and the address actually bound
    /// (with the real port when port 0 was asked for).
    pub(crate) async fn bind(addr: &Address) -> Result<(Listener, Address), RpcError> {
        match addr {
            Address::Tcp(hp) => {
                let l = TcpListener::bind(hp.as_str())
                    .await
                    .map_err(|e| RpcError::Io(IoError::new(format!("binding tcp://{hp}"), e)))?;
                let local = l.local_addr()?;
                Ok((Listener::Tcp(l), Address::Tcp(local.to_string())))
            }
            Address::Unix(p) => {
                remove_stale_socket(p).await?;
                let l = UnixListener::bind(p).map_err(|e| {
                    RpcError::Io(IoError::new(format!("binding unix://{}", p.display()), e))
                })?;
                Ok((Listener::Unix(l), addr.clone()))
            }
        }
    }

    /// Polls for the next connection; gives its halves and a printable
    /// description of the remote.
    fn poll_accept(
        &self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<(ReadHalf, WriteHalf, String)>> {
        match self {
            Listener::Tcp(l) => l.poll_accept(cx).map_ok(|(s, remote)| {
                let (r, w) = halves_tcp(s);
                (r, w, remote.to_string())
            }),
            Listener::Unix(l) => l.poll_accept(cx).map_ok(|(s, _)| {
                let (r, w) = halves_unix(s);
                (r, w, "unix peer".to_string())
            }),
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
    pub(crate) async fn accept(&self) -> std::io::Result<Option<(ReadHalf, WriteHalf, String)>> {
        std::future::poll_fn(|cx| {
            let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
            match &*guard {
                Some(l) => l.poll_accept(cx).map_ok(Some),
                None => std::task::Poll::Ready(Ok(None)),
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
async fn remove_stale_socket(path: &Path) -> Result<(), RpcError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    match UnixStream::connect(path).await {
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
