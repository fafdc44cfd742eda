//! TCP and Unix-socket transports for `rpc-core`.
//!
//! - [`Address`]: `tcp://host:port`, `unix:///path`, or `name://name`
//!   (looked up in a name service when dialed);
//! - [`connect`]: dial and get a [`Peer`](rpc_core::Peer), optionally
//!   reconnecting with [`Backoff`];
//! - [`Server`]: bind, accept, serve the exposed objects, report
//!   connects and disconnects as [`Event`]s, shut down gracefully;
//! - [`server_available`]: is anyone answering there?
//! - [`names`]: a name service (Pyro's name server): servers register a
//!   name and their address for as long as their connection lives, clients
//!   look names up or dial `name://` addresses. Always built: it needs no
//!   dependency beyond the transports' own, so it has no cargo feature.
//! - `tls` (the cargo feature `tls`, off by default): TLS with rustls over
//!   both kinds of socket, your own rustls configuration, and the caller's
//!   verified certificate for handlers (mutual TLS); see the `tls` module
//!   and `docs/tls.md`.
//! - [`balance`]: one client over many servers; with the cargo feature
//!   `dns` (off by default), `balance::Dns` finds the servers through DNS
//!   (A/AAAA or SRV records; a Kubernetes headless Service as it is).
//!
//! # Cargo features
//!
//! | Feature | Default | What it adds |
//! |---------|---------|--------------|
//! | `tcp`   | yes     | TCP sockets: `tcp://host:port` |
//! | `unix`  | yes     | Unix-domain sockets: `unix:///path` (only on Unix targets; elsewhere it does nothing) |
//! | `tls`   | no      | TLS with rustls (ring provider) over either kind of socket; turns on `tcp` |
//! | `dns`   | no      | `balance::Dns`: a balanced set's servers from DNS A/AAAA or SRV records, with hickory-resolver; turns on `tcp` |
//!
//! The name service ([`names`]) is not a feature: it is in every build.
//! Every [`Address`] variant exists whatever the features, so a `match` on
//! an address compiles the same in every build; dialing or binding an
//! address whose kind of socket is not built in fails with
//! [`RpcError::BadAddress`](rpc_core::RpcError::BadAddress) naming the
//! missing feature.
//!
//! # Examples
//!
//! ```
//! use rpc_core::{expose, CallContext, RpcError};
//!
//! pub struct Calculator;
//! #[expose]
//! impl Calculator {
//!     pub fn add(&self, a: i64, b: i64) -> i64 { a + b }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), RpcError> {
//! let server = rpc_transport::Server::builder()
//!     .expose(Calculator)
//!     .bind("tcp://127.0.0.1:0")
//!     .await?;
//! let peer = rpc_transport::connect(server.local_addr()).await?;
//! assert_eq!(CalculatorClient::new(&peer).add(2, 3).await?, 5);
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
pub mod balance;
pub mod blocking;
mod connect;
pub mod names;
mod server;
mod stream;
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
pub mod tls;

pub use address::{Address, ToAddress};
pub use connect::{connect, server_available, Backoff, Connect};
pub use server::{
    Event, Events, Server, ServerBuilder, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_MAX_HANDSHAKING,
};
