//! For code with no async at all: a connection whose tokio machinery runs
//! on background threads it owns, and calls that block until they are
//! answered.
//!
//! `#[expose]` also generates a blocking stub: `TypeClient::blocking` turns
//! a typed client into a `TypeBlockingClient` with the same methods minus
//! `async` (methods that return streams are left out), honouring the same
//! timeouts.
//!
//! # Examples
//!
//! ```
//! use rpc_core::{expose, RpcError};
//!
//! pub struct Calc;
//! #[expose]
//! impl Calc {
//!     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
//! }
//!
//! fn main() -> Result<(), RpcError> {
//!     # let server = rpc_transport::blocking::serve(rpc_transport::Server::builder().expose(Calc))?;
//!     # let addr = server.local_addr().clone();
//!     // A plain `fn main`: no runtime, no `.await`.
//!     let client = rpc_transport::blocking::connect(addr)?;
//!     let calc = CalcClient::new(client.peer()).blocking(client.runtime());
//!     assert_eq!(calc.add(2, 3)?, 5);
//!     client.close();
//!     Ok(())
//! }
//! ```

use rpc_core::{Peer, RpcError, Status};

use crate::address::ToAddress;
use crate::connect::Connect;
use crate::server::Server;

/// Background threads for the connection's tasks.
fn runtime(name: &str) -> Result<tokio::runtime::Runtime, RpcError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(RpcError::from)
}

/// Fails clearly where blocking would deadlock or stall a runtime.
fn refuse_inside_async(what: &str) {
    if tokio::runtime::Handle::try_current().is_ok() {
        panic!(
            "rpc_transport::blocking::{what} was called from async code (inside a tokio \
             runtime), where blocking would stall the runtime or deadlock: use \
             rpc_transport::connect(..).await and the async client instead"
        );
    }
}

/// A connection for synchronous code: the [`Peer`] and the runtime that
/// drives it, on background threads. Dropping it closes the connection.
///
/// # Examples
///
/// See the [module](self).
#[derive(Debug)]
pub struct Client {
    peer: Option<Peer>,
    runtime: Option<tokio::runtime::Runtime>,
}

/// Connects to `addr` and waits for the handshake, for code with no async.
///
/// # Errors
///
/// As [`connect`](crate::connect).
///
/// # Panics
///
/// When called from async code (inside a tokio runtime): use
/// [`connect`](crate::connect) there.
///
/// # Examples
///
/// See the [module](self).
pub fn connect(addr: impl ToAddress) -> Result<Client, RpcError> {
    connect_with(addr, |c| c)
}

/// [`connect`], with the connection's options set on the async builder
/// (objects to expose, a secret, a name, timeouts, reconnection).
///
/// # Errors
///
/// As [`connect`](crate::connect).
///
/// # Panics
///
/// When called from async code.
///
/// # Examples
///
/// ```
/// use rpc_core::{expose, RpcError};
///
/// pub struct Calc;
/// #[expose]
/// impl Calc {
///     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
/// }
///
/// # fn main() -> Result<(), RpcError> {
/// # let server = rpc_transport::blocking::serve(rpc_transport::Server::builder().expose(Calc))?;
/// let client = rpc_transport::blocking::connect_with(server.local_addr(), |c| {
///     c.name("script").call_timeout(std::time::Duration::from_secs(5))
/// })?;
/// assert_eq!(client.status(), rpc_core::Status::Connected);
/// # Ok(())
/// # }
/// ```
pub fn connect_with(
    addr: impl ToAddress,
    configure: impl FnOnce(Connect) -> Connect,
) -> Result<Client, RpcError> {
    refuse_inside_async("connect");
    let runtime = runtime("rpc-blocking")?;
    let connecting = configure(crate::connect(addr));
    let peer = runtime.block_on(connecting)?;
    Ok(Client {
        peer: Some(peer),
        runtime: Some(runtime),
    })
}

impl Client {
    /// The connection: make typed stubs from it, expose objects on it.
    ///
    /// # Examples
    ///
    /// See the [module](self).
    pub fn peer(&self) -> &Peer {
        self.peer.as_ref().expect("present until drop")
    }

    /// The runtime that drives the connection, for
    /// `TypeClient::blocking` and [`block_on`](Client::block_on).
    ///
    /// # Examples
    ///
    /// See the [module](self).
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.runtime.as_ref().expect("present until drop").handle()
    }

    /// Runs any future of the async API to its end and returns its output:
    /// a dynamic call, a ping, `Peer::closed`.
    ///
    /// # Panics
    ///
    /// When called from async code.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rpc_core::RpcError> {
    /// # let server = rpc_transport::blocking::serve(rpc_transport::Server::builder())?;
    /// let client = rpc_transport::blocking::connect(server.local_addr())?;
    /// let rtt = client.block_on(client.peer().ping())?;
    /// # let _ = rtt;
    /// # Ok(())
    /// # }
    /// ```
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        refuse_inside_async("Client::block_on");
        self.runtime().block_on(future)
    }

    /// The connection's status now.
    ///
    /// # Examples
    ///
    /// See [`connect_with`].
    pub fn status(&self) -> Status {
        *self.peer().status().borrow()
    }

    /// Closes the connection and waits until the goodbye is written.
    ///
    /// # Examples
    ///
    /// See the [module](self).
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let (Some(peer), Some(runtime)) = (self.peer.take(), self.runtime.take()) {
            if tokio::runtime::Handle::try_current().is_err() {
                runtime.block_on(peer.close());
            }
            drop(peer);
            runtime.shutdown_background();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.shut();
    }
}

/// Binds a server on background threads, for synchronous programs and
/// tests, on a fresh loopback TCP port. Dropping it stops it.
///
/// # Errors
///
/// As [`ServerBuilder::bind`](crate::ServerBuilder::bind).
///
/// # Panics
///
/// When called from async code.
///
/// # Examples
///
/// See the [module](self).
pub fn serve(builder: crate::ServerBuilder) -> Result<BlockingServer, RpcError> {
    refuse_inside_async("serve");
    let runtime = runtime("rpc-blocking-server")?;
    let server = runtime.block_on(builder.bind("tcp://127.0.0.1:0"))?;
    Ok(BlockingServer {
        server: Some(server),
        runtime: Some(runtime),
    })
}

/// A [`Server`] with the runtime that drives it; see [`serve`].
#[derive(Debug)]
pub struct BlockingServer {
    server: Option<Server>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl BlockingServer {
    /// The address it listens on.
    ///
    /// # Examples
    ///
    /// See the [module](self).
    pub fn local_addr(&self) -> &crate::Address {
        self.server
            .as_ref()
            .expect("present until drop")
            .local_addr()
    }
}

impl Drop for BlockingServer {
    fn drop(&mut self) {
        drop(self.server.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
