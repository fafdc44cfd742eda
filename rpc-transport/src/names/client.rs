//! The calling side of the name service: [`Names`] (where it is and the
//! everyday verbs), [`Registration`] (a name kept registered while it
//! lives), and the lookup behind `name://` addresses.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rpc_core::{DisconnectReason, Peer, RpcError, Status};
use tracing::{debug, info, warn};

use super::{Entry, NameError, NameServiceClient, ENV};
use crate::address::{Address, ToAddress};
use crate::connect::Backoff;

/// How long one request to the name service may take once connected.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a name service is, and how to reach it: its address (with the
/// shared secret or TLS it requires), or a connection already open to it.
///
/// Give it to [`Connect::names`](crate::Connect::names) to dial `name://`
/// addresses, or use its verbs directly. Through an address, each verb but
/// [`register`](Names::register) opens a connection for itself and closes
/// it after; a `Names` made [`through`](Names::through) a peer uses that
/// peer's connection.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use rpc_transport::names::{NameService, Names};
/// use rpc_transport::{Address, Server};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let ns = Server::builder()
///     .expose(NameService::new())
///     .secret("s3cret")
///     .bind("tcp://127.0.0.1:0")
///     .await?;
/// let names = Names::at(ns.local_addr()).secret("s3cret");
/// let _registration = names.register("db", "unix:///run/db.sock", BTreeMap::new()).await??;
/// assert_eq!(names.resolve("db").await?, Address::Unix("/run/db.sock".into()));
/// assert_eq!(names.list("").await?.len(), 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Names {
    how: How,
}

#[derive(Clone, Debug)]
enum How {
    Dial(Dial),
    Through(Peer),
}

/// A name service to dial, with the options it needs.
#[derive(Clone)]
struct Dial {
    addr: Result<Address, RpcError>,
    secret: Option<Vec<u8>>,
    #[cfg(feature = "tls")]
    tls: Option<(std::sync::Arc<rustls::ClientConfig>, String)>,
}

impl fmt::Debug for Dial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Dial");
        d.field("addr", &self.addr)
            // Never the secret itself.
            .field("secret", &self.secret.as_ref().map(|_| "set"));
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.as_ref().map(|(_, name)| name));
        d.finish()
    }
}

impl Names {
    /// The name service at `addr` (a `tcp://` or `unix://` address).
    ///
    /// An address that does not parse, or is itself a `name://`, makes
    /// every verb fail with [`RpcError::BadAddress`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), rpc_core::RpcError> {
    /// use rpc_transport::names::Names;
    ///
    /// let names = Names::at("tcp://names.internal:9090");
    /// let echo = names.lookup("echo").await?;
    /// # let _ = echo; Ok(()) }
    /// ```
    pub fn at(addr: impl ToAddress) -> Names {
        Names {
            how: How::Dial(Dial {
                addr: addr.to_address(),
                secret: None,
                #[cfg(feature = "tls")]
                tls: None,
            }),
        }
    }

    /// The name service at the other end of `peer`, called over that
    /// connection.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::names::{NameService, Names};
    /// use rpc_transport::{connect, Server};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let peer = connect(ns.local_addr()).await?;
    /// let names = Names::through(&peer);
    /// assert!(names.lookup("nobody").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn through(peer: &Peer) -> Names {
        Names {
            how: How::Through(peer.clone()),
        }
    }

    /// The name service named by the environment variable [`ENV`]
    /// (`RPC_NAMES`), if it is set and not empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::names::Names;
    ///
    /// if let Some(names) = Names::from_env() {
    ///     println!("names are looked up in {names:?}");
    /// }
    /// ```
    pub fn from_env() -> Option<Names> {
        let value = std::env::var(ENV).ok().filter(|v| !v.trim().is_empty())?;
        let addr = value
            .trim()
            .parse::<Address>()
            .map_err(|e| RpcError::BadAddress(format!("the environment variable {ENV}: {e}")));
        Some(Names {
            how: How::Dial(Dial {
                addr,
                secret: None,
                #[cfg(feature = "tls")]
                tls: None,
            }),
        })
    }

    /// Authenticates to the name service with this shared secret (it must
    /// have the same). No effect on a `Names` made [`through`](Names::through)
    /// a peer.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::names::{NameService, Names};
    /// use rpc_transport::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).secret("s3cret").bind("tcp://127.0.0.1:0").await?;
    /// assert!(Names::at(ns.local_addr()).secret("s3cret").lookup("echo").await.is_ok());
    /// let wrong = Names::at(ns.local_addr()).secret("guess").lookup("echo").await;
    /// assert!(matches!(wrong, Err(RpcError::AuthFailed(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub fn secret(mut self, secret: impl AsRef<[u8]>) -> Self {
        if let How::Dial(dial) = &mut self.how {
            dial.secret = Some(secret.as_ref().to_vec());
        }
        self
    }

    /// Reaches the name service inside TLS, as
    /// [`Connect::tls`](crate::Connect::tls) does. No effect on a `Names`
    /// made [`through`](Names::through) a peer.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(config: std::sync::Arc<rpc_transport::tls::rustls::ClientConfig>) {
    /// use rpc_transport::names::Names;
    ///
    /// let names = Names::at("tcp://names.internal:9090").tls(config, "names.internal");
    /// # let _ = names; }
    /// ```
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(
        mut self,
        config: impl Into<std::sync::Arc<rustls::ClientConfig>>,
        server_name: impl Into<String>,
    ) -> Self {
        if let How::Dial(dial) = &mut self.how {
            dial.tls = Some((config.into(), server_name.into()));
        }
        self
    }

    /// The secret to use when none was set (for a name service found in
    /// the environment: the secret of the connection being made).
    pub(crate) fn or_secret(mut self, secret: Option<&[u8]>) -> Self {
        if let (How::Dial(dial), Some(secret)) = (&mut self.how, secret) {
            dial.secret.get_or_insert_with(|| secret.to_vec());
        }
        self
    }

    /// A connection to the name service: a new one, or the peer it was
    /// made [`through`](Names::through).
    ///
    /// # Errors
    ///
    /// As [`connect`](crate::connect); [`RpcError::BadAddress`] when the
    /// name service's address is not a `tcp://` or `unix://` address.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use rpc_transport::names::{NameService, NameServiceClient, Names};
    /// use rpc_transport::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let peer = Names::at(ns.local_addr()).connect().await?;
    /// let changes = NameServiceClient::new(&peer).watch("shop.".into()).await?;
    /// # drop(changes);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(&self) -> Result<Peer, RpcError> {
        self.open(None).await
    }

    async fn open(&self, reconnect: Option<Backoff>) -> Result<Peer, RpcError> {
        let dial = match &self.how {
            How::Through(peer) => return Ok(peer.clone()),
            How::Dial(dial) => dial,
        };
        let addr = dial.addr.clone()?;
        if let Address::Name(_) = addr {
            return Err(RpcError::BadAddress(format!(
                "`{addr}` cannot be the name service's own address: give its `tcp://` or `unix://` address"
            )));
        }
        let mut connect = crate::connect(addr).name("names-client");
        if let Some(secret) = &dial.secret {
            connect = connect.secret(secret);
        }
        #[cfg(feature = "tls")]
        if let Some((config, name)) = &dial.tls {
            connect = connect.tls(config.clone(), name.clone());
        }
        if let Some(backoff) = reconnect {
            connect = connect.reconnect(backoff);
        }
        connect.await
    }

    /// Runs `f` with a client of the name service, on a connection opened
    /// for it (and closed after) or the one it was made through.
    async fn with_client<T, F, Fut>(&self, f: F) -> Result<T, RpcError>
    where
        F: FnOnce(NameServiceClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, RpcError>>,
    {
        let peer = self.open(None).await?;
        let client = NameServiceClient::new(&peer).with_timeout(REQUEST_TIMEOUT);
        let result = f(client).await;
        if let How::Dial(_) = self.how {
            peer.close().await;
        }
        result
    }

    /// The entry registered under `name`, if any.
    ///
    /// # Errors
    ///
    /// As [`connect`](Names::connect), and the call's errors.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), rpc_core::RpcError> {
    /// use rpc_transport::names::Names;
    ///
    /// match Names::at("tcp://127.0.0.1:9090").lookup("echo").await? {
    ///     Some(entry) => println!("echo is at {} ({:?})", entry.address, entry.metadata),
    ///     None => println!("nobody registered echo"),
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lookup(&self, name: &str) -> Result<Option<Entry>, RpcError> {
        let name = name.to_string();
        self.with_client(|c| async move { c.lookup(name).await })
            .await
    }

    /// The address registered under `name`.
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] when nothing is registered under `name`
    /// (the message names the name service); otherwise as
    /// [`lookup`](Names::lookup).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::names::{NameService, Names};
    /// use rpc_transport::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let err = Names::at(ns.local_addr()).resolve("echo").await.unwrap_err();
    /// assert!(matches!(err, RpcError::BadAddress(m) if m.contains("no server is registered as `echo`")));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn resolve(&self, name: &str) -> Result<Address, RpcError> {
        match self.lookup(name).await? {
            Some(entry) => entry.address(),
            None => Err(RpcError::BadAddress(format!(
                "`name://{name}`: no server is registered as `{name}` with the name service {}",
                self.describe()
            ))),
        }
    }

    /// The entries whose names start with `prefix` (all for `""`), in name
    /// order.
    ///
    /// # Errors
    ///
    /// As [`lookup`](Names::lookup).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), rpc_core::RpcError> {
    /// use rpc_transport::names::Names;
    ///
    /// for entry in Names::at("tcp://127.0.0.1:9090").list("shop.").await? {
    ///     println!("{} -> {}", entry.name, entry.address);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn list(&self, prefix: &str) -> Result<Vec<Entry>, RpcError> {
        let prefix = prefix.to_string();
        self.with_client(|c| async move { c.list(prefix).await })
            .await
    }

    /// Registers `name` at `address` with `metadata`, and keeps it
    /// registered while the returned [`Registration`] lives.
    ///
    /// Through an address, the registration gets a connection of its own
    /// that reconnects by itself; after each reconnection (a restarted
    /// name service, say) the name is registered again. Made
    /// [`through`](Names::through) a peer, it lives on that peer's
    /// connection (and is registered again if that peer reconnects).
    ///
    /// # Errors
    ///
    /// The outer error: connecting or calling failed. The inner one: the
    /// name service refused the registration ([`NameError`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use rpc_transport::names::{NameError, NameService, Names};
    /// use rpc_transport::Server;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), rpc_core::RpcError> {
    /// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
    /// let names = Names::at(ns.local_addr());
    /// let meta = BTreeMap::from([("zone".to_string(), "a".to_string())]);
    /// let first = names.register("echo", "tcp://127.0.0.1:9099", meta).await?.unwrap();
    /// let second = names.register("echo", "tcp://127.0.0.1:9100", BTreeMap::new()).await?;
    /// assert_eq!(second.unwrap_err(), NameError::Taken("echo".into()));
    /// assert_eq!(names.lookup("echo").await?.unwrap().metadata["zone"], "a");
    /// # drop(first);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn register(
        &self,
        name: &str,
        address: impl ToAddress,
        metadata: BTreeMap<String, String>,
    ) -> Result<Result<Registration, NameError>, RpcError> {
        let address = address.to_address()?;
        let entry = Entry {
            name: name.to_string(),
            address: address.to_string(),
            metadata,
        };
        let owned = matches!(self.how, How::Dial(_));
        let peer = self.open(owned.then(Backoff::default)).await?;
        let client = NameServiceClient::new(&peer).with_timeout(REQUEST_TIMEOUT);
        let registered = client
            .register(
                entry.name.clone(),
                entry.address.clone(),
                entry.metadata.clone(),
            )
            .await;
        let refused = match registered {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Ok(e)),
            Err(e) => Some(Err(e)),
        };
        if let Some(refused) = refused {
            if owned {
                peer.close().await;
            }
            return refused.map(Err);
        }
        let keeper = tokio::spawn(keep(client.clone(), entry.clone())).abort_handle();
        Ok(Ok(Registration {
            client,
            name: entry.name,
            owned,
            keeper,
            done: false,
        }))
    }

    /// Where the name service is, for messages.
    fn describe(&self) -> String {
        match &self.how {
            How::Dial(Dial { addr: Ok(addr), .. }) => format!("at {addr}"),
            How::Dial(Dial { addr: Err(e), .. }) => format!("({e})"),
            How::Through(peer) => format!("on connection {}", peer.connection_id()),
        }
    }
}

impl From<Address> for Names {
    fn from(addr: Address) -> Names {
        Names::at(addr)
    }
}

impl From<&Address> for Names {
    fn from(addr: &Address) -> Names {
        Names::at(addr)
    }
}

impl From<&str> for Names {
    fn from(addr: &str) -> Names {
        Names::at(addr)
    }
}

impl From<String> for Names {
    fn from(addr: String) -> Names {
        Names::at(addr)
    }
}

impl From<&String> for Names {
    fn from(addr: &String) -> Names {
        Names::at(addr)
    }
}

impl From<&Peer> for Names {
    fn from(peer: &Peer) -> Names {
        Names::through(peer)
    }
}

impl From<Peer> for Names {
    fn from(peer: Peer) -> Names {
        Names::through(&peer)
    }
}

/// Registers `entry` again after each reconnection of the client's peer,
/// until the peer closes for good (or the registration is dropped, which
/// aborts this task).
async fn keep(client: NameServiceClient, entry: Entry) {
    let mut status = client.peer().status();
    let backoff = Backoff::default();
    loop {
        // Wait for the connection to be lost, then for the next one.
        let lost = status
            .wait_for(|s| *s != Status::Connected)
            .await
            .map(|s| *s);
        if !matches!(lost, Ok(Status::Reconnecting | Status::Connecting)) {
            return;
        }
        let back = status
            .wait_for(|s| matches!(s, Status::Connected | Status::Closed))
            .await
            .map(|s| *s);
        if !matches!(back, Ok(Status::Connected)) {
            return;
        }
        let mut attempt = 0u32;
        loop {
            let again = client
                .register(
                    entry.name.clone(),
                    entry.address.clone(),
                    entry.metadata.clone(),
                )
                .await;
            match again {
                Ok(Ok(())) => {
                    info!(name = %entry.name, "registered again after reconnecting");
                    break;
                }
                Err(e) if e.is_connection_error() => break,
                // The name service has not yet seen the old connection go,
                // or did not answer: try again shortly.
                Ok(Err(NameError::Taken(_))) | Err(_) => {
                    let delay = backoff.delay(attempt);
                    attempt = attempt.saturating_add(1);
                    debug!(name = %entry.name, ?delay, "registering again after a pause");
                    tokio::time::sleep(delay).await;
                }
                Ok(Err(e)) => {
                    warn!(name = %entry.name, error = %e, "the name service refused the registration after reconnecting");
                    break;
                }
            }
        }
    }
}

/// A name kept registered with a name service; made by
/// [`Names::register`].
///
/// The name lives as long as the connection that registered it: dropping
/// the `Registration` closes that connection (one opened for it), or
/// unregisters the name (on a connection it was made
/// [`through`](Names::through)), and the name service removes the name.
///
/// # Examples
///
/// ```
/// use std::collections::BTreeMap;
/// use rpc_transport::names::{NameService, Names};
/// use rpc_transport::Server;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), rpc_core::RpcError> {
/// let ns = Server::builder().expose(NameService::new()).bind("tcp://127.0.0.1:0").await?;
/// let names = Names::at(ns.local_addr());
/// let registration = names.register("echo", "tcp://127.0.0.1:9099", BTreeMap::new()).await?.unwrap();
/// assert_eq!(registration.name(), "echo");
/// assert_eq!(registration.unregister().await?, Ok(true));
/// assert!(names.lookup("echo").await?.is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Registration {
    client: NameServiceClient,
    name: String,
    /// The connection was opened for this registration.
    owned: bool,
    keeper: tokio::task::AbortHandle,
    /// Unregistered already: nothing left for `drop`.
    done: bool,
}

impl Registration {
    /// The registered name.
    ///
    /// # Examples
    ///
    /// See [`Registration`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The connection the name lives on.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(registration: rpc_transport::names::Registration) {
    /// let connected = registration.peer().is_connected();
    /// # let _ = connected; }
    /// ```
    pub fn peer(&self) -> &Peer {
        self.client.peer()
    }

    /// Unregisters the name now: whether the name service still had it.
    ///
    /// # Errors
    ///
    /// The outer error: the call failed. The inner one: the name service
    /// refused ([`NameError::NotOwner`], if another connection holds the
    /// name by now).
    ///
    /// # Examples
    ///
    /// See [`Registration`].
    pub async fn unregister(mut self) -> Result<Result<bool, NameError>, RpcError> {
        self.done = true;
        self.keeper.abort();
        let result = self.client.unregister(self.name.clone()).await;
        if self.owned {
            self.client.peer().close().await;
        }
        result
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.keeper.abort();
        if self.done {
            return;
        }
        if self.owned {
            // The name goes with the connection.
            self.client.peer().close_with(DisconnectReason::Closed);
        } else if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (client, name) = (self.client.clone(), self.name.clone());
            runtime.spawn(async move {
                let _ = client.unregister(name).await;
            });
        }
    }
}

/// The address to dial for `addr`: itself, or for a `name://` the address
/// registered under the name, looked up in `names`, else in the name
/// service of [`ENV`] (reached with `secret`).
pub(crate) async fn resolve(
    addr: &Address,
    names: Option<&Names>,
    secret: Option<&[u8]>,
) -> Result<Address, RpcError> {
    let Address::Name(name) = addr else {
        return Ok(addr.clone());
    };
    let from_env;
    let names = match names {
        Some(names) => names,
        None => match Names::from_env() {
            Some(found) => {
                from_env = found.or_secret(secret);
                &from_env
            }
            None => {
                return Err(RpcError::BadAddress(format!(
                    "`{addr}` needs a name service to look `{name}` up in: give one with \
                     `Connect::names`, or set the environment variable {ENV}"
                )))
            }
        },
    };
    let resolved = names.resolve(name).await?;
    debug!(%addr, %resolved, "name resolved");
    Ok(resolved)
}
