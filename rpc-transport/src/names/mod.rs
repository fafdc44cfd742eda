//! A name service: servers register a name and their address, clients look
//! the name up (Pyro's name server, built on this framework).
//!
//! What lives here:
//!
//! - [`NameService`]: the service itself, an object to expose on a
//!   [`Server`](crate::Server) (the `names` example runs one). Its methods
//!   are `register`, `unregister`, `lookup`, `list` and `watch`; callers use
//!   the generated [`NameServiceClient`].
//! - [`Names`]: where a name service is and how to reach it, with the
//!   everyday verbs: [`lookup`](Names::lookup), [`resolve`](Names::resolve),
//!   [`list`](Names::list) and [`register`](Names::register), which gives a
//!   [`Registration`] that keeps the name registered while it lives.
//! - `name://` addresses: [`Address::Name`] is looked up through a name
//!   service each time it is dialed; see [`Connect::names`](crate::Connect::names)
//!   and [`ENV`].
//!
//! **Liveness.** A registration lives exactly as long as the connection
//! that made it: when that connection closes (the server process exits, the
//! network drops it, heartbeats time out), its names are removed and
//! watchers see [`Change::Removed`] with [`Removal::Disconnected`]. Nothing
//! has to be renewed and nothing stale is left behind.
//!
//! **Conflicts.** A name belongs to the connection that registered it. The
//! same connection may register the name again (a new address or new
//! metadata; watchers see the new entry); another connection is refused
//! with [`NameError::Taken`] while the first one lives. Only the owner may
//! unregister a name ([`NameError::NotOwner`]).
//!
//! **Limits.** Every peer on the network may call the service, so what it
//! can make the service hold is bounded ([`NameLimits`]): names per
//! connection, names in all, the length of a name, an address and the
//! metadata. A registration beyond a limit is refused with the
//! [`NameError`] naming it. Watches are streams, bounded per connection by
//! [`PeerConfig::max_streams`](rpc_core::PeerConfig::max_streams), and hold
//! no copy of the table.
//!
//! **Protection.** The name service is an ordinary server: a shared secret
//! ([`ServerBuilder::secret`](crate::ServerBuilder::secret)) or TLS protect
//! it like any other, and its clients pass the same options
//! ([`Names::secret`], and `Names::tls` with the `tls` feature).
//!
//! The name service is always built (it needs no dependency beyond those
//! of the transports); `docs/many-hosts.md` is the guide.
//!
//! # Examples
//!
//! ```
//! use std::collections::BTreeMap;
//! use rpc_core::expose;
//! use rpc_transport::names::{NameService, Names};
//! use rpc_transport::{connect, Server};
//!
//! pub struct Echo;
//! #[expose]
//! impl Echo {
//!     pub fn echo(&self, s: String) -> String { s }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The name service, on a server of its own.
//! let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
//! let names = Names::at(ns.local_addr());
//!
//! // A server registers itself; the name lives as long as `registration`.
//! let echo = Server::builder().expose(Echo).bind("tcp://127.0.0.1:0").await?;
//! let registration = names.register("echo", echo.local_addr(), BTreeMap::new()).await??;
//!
//! // A client dials it by name.
//! let peer = connect("name://echo").names(names.clone()).await?;
//! assert_eq!(EchoClient::new(&peer).echo("hi".into()).await?, "hi");
//!
//! drop(registration);
//! # let mut gone = false;
//! # for _ in 0..200 {
//! #     if names.lookup("echo").await?.is_none() { gone = true; break; }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! # assert!(gone);
//! assert!(names.lookup("echo").await?.is_none());
//! # Ok(())
//! # }
//! ```
//!
//! [`Address::Name`]: crate::Address::Name

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod client;
mod service;
mod table;

pub(crate) use client::resolve;
pub use client::{Names, Registration};
pub use service::{NameService, NameServiceBlockingClient, NameServiceClient};

/// The environment variable naming the name service that `name://`
/// addresses are looked up in when [`Connect::names`](crate::Connect::names)
/// was not given one: `RPC_NAMES=tcp://names.internal:9090`.
///
/// A name service found this way is dialed with the shared secret of the
/// connection being made, if it has one, and without TLS.
///
/// # Examples
///
/// ```
/// assert_eq!(rpc_transport::names::ENV, "RPC_NAMES");
/// ```
pub const ENV: &str = "RPC_NAMES";

/// One registration: a name, the address its server listens on, and
/// whatever the server wants to say about itself.
///
/// # Examples
///
/// ```
/// use rpc_transport::names::Entry;
/// use rpc_transport::Address;
///
/// let entry = Entry {
///     name: "echo".into(),
///     address: "tcp://10.0.0.7:9099".into(),
///     metadata: [("version".to_string(), "2".to_string())].into(),
/// };
/// assert_eq!(entry.address()?, Address::Tcp("10.0.0.7:9099".into()));
/// # Ok::<(), rpc_core::RpcError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The registered name.
    pub name: String,
    /// Where its server listens: a `tcp://` or `unix://` address.
    pub address: String,
    /// Key-value pairs the server registered with the name (a version, a
    /// region, a weight...).
    pub metadata: BTreeMap<String, String>,
}

impl Entry {
    /// The [`address`](Entry::address) field, parsed.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`](rpc_core::RpcError::BadAddress) when it
    /// does not parse (the service accepts only addresses that do).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::names::Entry;
    ///
    /// let entry = Entry { name: "db".into(), address: "unix:///run/db.sock".into(), metadata: Default::default() };
    /// assert_eq!(entry.address()?.to_string(), "unix:///run/db.sock");
    /// # Ok::<(), rpc_core::RpcError>(())
    /// ```
    pub fn address(&self) -> Result<crate::Address, rpc_core::RpcError> {
        self.address.parse()
    }
}

/// What a [`watch`](NameServiceClient::watch) reports.
///
/// # Examples
///
/// ```
/// use rpc_transport::names::{Change, Removal};
///
/// let change = Change::Removed { name: "echo".into(), why: Removal::Disconnected };
/// assert_eq!(change.name(), Some("echo"));
/// assert_eq!(Change::Missed(3).name(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A name was registered, or registered again by its owner with a new
    /// address or metadata. A watch starts with one of these for every name
    /// registered under its prefix at the time.
    Registered(Entry),
    /// A name went away.
    Removed {
        /// The name.
        name: String,
        /// Why.
        why: Removal,
    },
    /// The watcher fell so far behind that this many changes (of any name)
    /// were dropped; [`list`](NameServiceClient::list) gives the current
    /// state.
    Missed(u64),
}

impl Change {
    /// The name this change is about, if it is about one.
    ///
    /// # Examples
    ///
    /// See [`Change`].
    pub fn name(&self) -> Option<&str> {
        match self {
            Change::Registered(entry) => Some(&entry.name),
            Change::Removed { name, .. } => Some(name),
            Change::Missed(_) => None,
        }
    }
}

/// Why a name was removed.
///
/// # Examples
///
/// ```
/// use rpc_transport::names::Removal;
/// assert_ne!(Removal::Unregistered, Removal::Disconnected);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Removal {
    /// Its owner unregistered it.
    Unregistered,
    /// The connection that registered it closed.
    Disconnected,
}

/// Why the name service refused a request.
///
/// # Examples
///
/// ```
/// use rpc_transport::names::NameError;
///
/// let e = NameError::Taken("echo".into());
/// assert_eq!(e.to_string(), "the name `echo` is registered by another connection");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum NameError {
    /// Another live connection holds this name.
    Taken(String),
    /// The name is registered by another connection; only its owner may
    /// unregister it.
    NotOwner(String),
    /// The name is empty, too long, or has a character other than ASCII
    /// letters, digits, `.`, `-` and `_`; why.
    InvalidName(String),
    /// The address is too long, does not parse, or is itself a `name://`;
    /// why.
    InvalidAddress(String),
    /// The metadata has too many entries or too many bytes; why.
    InvalidMetadata(String),
    /// This connection already holds the most names one connection may.
    TooManyNames {
        /// The limit ([`NameLimits::max_names_per_connection`]).
        limit: usize,
    },
    /// The service holds the most names it may.
    Full {
        /// The limit ([`NameLimits::max_names`]).
        limit: usize,
    },
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Taken(name) => {
                write!(f, "the name `{name}` is registered by another connection")
            }
            NameError::NotOwner(name) => write!(
                f,
                "the name `{name}` is registered by another connection; only it may unregister the name"
            ),
            NameError::InvalidName(why) => write!(f, "invalid name: {why}"),
            NameError::InvalidAddress(why) => write!(f, "invalid address: {why}"),
            NameError::InvalidMetadata(why) => write!(f, "invalid metadata: {why}"),
            NameError::TooManyNames { limit } => write!(
                f,
                "this connection already holds {limit} names, the most one connection may"
            ),
            NameError::Full { limit } => {
                write!(f, "the name service holds {limit} names, the most it may")
            }
        }
    }
}

impl std::error::Error for NameError {}

/// What one peer can make a [`NameService`] hold.
///
/// Start from the defaults and change the fields that matter
/// ([`NameService::with_limits`]).
///
/// # Examples
///
/// ```
/// use rpc_transport::names::{NameLimits, NameService};
///
/// let mut limits = NameLimits::default();
/// assert_eq!(limits.max_names_per_connection, 64);
/// limits.max_names_per_connection = 4;
/// let service = NameService::with_limits(limits);
/// assert_eq!(service.limits().max_names_per_connection, 4);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NameLimits {
    /// Names one connection may hold at once (default 64).
    pub max_names_per_connection: usize,
    /// Names the service holds in all (default 4096).
    pub max_names: usize,
    /// The longest name, in bytes (default 128).
    pub max_name_len: usize,
    /// The longest address, in bytes (default 512).
    pub max_address_len: usize,
    /// Metadata entries per name (default 16).
    pub max_metadata_entries: usize,
    /// Bytes of metadata per name, keys and values together (default 1024).
    pub max_metadata_bytes: usize,
}

impl Default for NameLimits {
    fn default() -> Self {
        NameLimits {
            max_names_per_connection: 64,
            max_names: 4096,
            max_name_len: 128,
            max_address_len: 512,
            max_metadata_entries: 16,
            max_metadata_bytes: 1024,
        }
    }
}

/// Whether `name` may be registered: one to `max_len` bytes of ASCII
/// letters, digits, `.`, `-` and `_`. The same rule makes `name://` parse.
pub(crate) fn check_name(name: &str, max_len: usize) -> Result<(), String> {
    if name.is_empty() {
        return Err("a name cannot be empty".into());
    }
    if name.len() > max_len {
        return Err(format!(
            "a name is at most {max_len} bytes; this one has {}",
            name.len()
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if let Some(bad) = name.chars().find(|c| !allowed(*c)) {
        return Err(format!(
            "`{}` has the character {bad:?}; names use ASCII letters, digits, `.`, `-` and `_`",
            name.escape_debug()
        ));
    }
    Ok(())
}
