//! [`Address`]: where a server listens or a client dials, written as
//! `tcp://host:port` or `unix:///path/to/socket`; or `name://name`, a
//! server registered with a name service, looked up when dialed.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rpc_core::RpcError;

/// A transport address.
///
/// Every variant exists whatever the cargo features, and every form always
/// parses; dialing or binding one whose kind of socket is not built in
/// (`tcp`, or `unix` on a Unix target) fails with [`RpcError::BadAddress`]
/// naming the missing feature.
///
/// A [`Name`](Address::Name) (`name://echo`) is not a socket: it is looked
/// up in a name service each time it is dialed (the first time and on
/// every reconnection), which gives the `tcp://` or `unix://` address the
/// server registered. The name service is the one given to
/// [`Connect::names`](crate::Connect::names), or else the one at
/// `$RPC_NAMES` ([`names::ENV`](crate::names::ENV)). Binding a `name://`
/// address fails with [`RpcError::BadAddress`]: a server binds a socket and
/// registers it ([`names`](crate::names)).
///
/// # Examples
///
/// ```
/// use rpc_transport::Address;
///
/// let a: Address = "tcp://127.0.0.1:9099".parse().unwrap();
/// assert_eq!(a.to_string(), "tcp://127.0.0.1:9099");
/// let u: Address = "unix:///run/app.sock".parse().unwrap();
/// assert!(matches!(u, Address::Unix(_)));
/// let n: Address = "name://echo".parse().unwrap();
/// assert_eq!(n, Address::Name("echo".into()));
/// assert_eq!(n.to_string(), "name://echo");
/// let err = "127.0.0.1:9099".parse::<Address>().unwrap_err();
/// assert!(err.to_string().contains("tcp://host:port"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP `host:port`; the host may be a name, an IPv4 or a bracketed IPv6 address.
    Tcp(String),
    /// A Unix-domain socket path.
    Unix(PathBuf),
    /// A name registered with a name service, resolved to one of the other
    /// forms when dialed (see [`names`](crate::names)).
    Name(String),
}

const FORMS: &str =
    "expected `tcp://host:port`, `unix:///path/to/socket` or `name://registered-name`";

impl FromStr for Address {
    type Err = RpcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("tcp://") {
            let (host, port) = rest
                .rsplit_once(':')
                .ok_or_else(|| RpcError::BadAddress(format!("`{s}` has no port; {FORMS}")))?;
            if host.is_empty() {
                return Err(RpcError::BadAddress(format!("`{s}` has no host; {FORMS}")));
            }
            port.parse::<u16>().map_err(|_| {
                RpcError::BadAddress(format!("`{s}` has an invalid port `{port}`; {FORMS}"))
            })?;
            Ok(Address::Tcp(rest.to_string()))
        } else if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(RpcError::BadAddress(format!("`{s}` has no path; {FORMS}")));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(name) = s.strip_prefix("name://") {
            crate::names::check_name(name, usize::MAX)
                .map_err(|why| RpcError::BadAddress(format!("`{s}`: {why}")))?;
            Ok(Address::Name(name.to_string()))
        } else {
            Err(RpcError::BadAddress(format!("`{s}`: {FORMS}")))
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(hp) => write!(f, "tcp://{hp}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Name(n) => write!(f, "name://{n}"),
        }
    }
}

/// Anything that names an [`Address`]: an `Address`, or a string to parse.
///
/// Functions that take an address ([`connect`](crate::connect),
/// [`ServerBuilder::bind`](crate::ServerBuilder::bind)) accept any of them.
///
/// # Examples
///
/// ```
/// use rpc_transport::{Address, ToAddress};
///
/// fn port_of(addr: impl ToAddress) -> Option<u16> {
///     match addr.to_address().ok()? {
///         Address::Tcp(hp) => hp.rsplit_once(':')?.1.parse().ok(),
///         Address::Unix(_) | Address::Name(_) => None,
///     }
/// }
///
/// assert_eq!(port_of("tcp://localhost:9099"), Some(9099));
/// assert_eq!(port_of(String::from("unix:///run/app.sock")), None);
/// assert_eq!(port_of(Address::Tcp("[::1]:80".into())), Some(80));
/// ```
pub trait ToAddress {
    /// Converts to an [`Address`].
    ///
    /// # Errors
    ///
    /// [`RpcError::BadAddress`] when a string is not a valid address.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::RpcError;
    /// use rpc_transport::{Address, ToAddress};
    ///
    /// let a = "tcp://127.0.0.1:80".to_address().unwrap();
    /// assert_eq!(a, Address::Tcp("127.0.0.1:80".into()));
    /// let err = "tcp://127.0.0.1".to_address().unwrap_err();
    /// assert!(matches!(err, RpcError::BadAddress(_)));
    /// ```
    fn to_address(&self) -> Result<Address, RpcError>;
}

impl ToAddress for Address {
    fn to_address(&self) -> Result<Address, RpcError> {
        Ok(self.clone())
    }
}

impl ToAddress for &Address {
    fn to_address(&self) -> Result<Address, RpcError> {
        Ok((*self).clone())
    }
}

impl ToAddress for str {
    fn to_address(&self) -> Result<Address, RpcError> {
        self.parse()
    }
}

impl ToAddress for &str {
    fn to_address(&self) -> Result<Address, RpcError> {
        self.parse()
    }
}

impl ToAddress for String {
    fn to_address(&self) -> Result<Address, RpcError> {
        self.parse()
    }
}

impl ToAddress for &String {
    fn to_address(&self) -> Result<Address, RpcError> {
        self.parse()
    }
}
