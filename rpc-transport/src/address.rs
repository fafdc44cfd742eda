//! [`Address`]: where a server listens or a client dials, written as
//! `tcp://host:port` or `unix:///path/to/socket`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use rpc_core::RpcError;

/// A transport address.
///
/// Both variants exist whatever the cargo features, and both always parse;
/// dialing or binding one whose kind of socket is not built in (`tcp`, or
/// `unix` on a Unix target) fails with [`RpcError::BadAddress`] naming the
/// missing feature.
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
/// let err = "127.0.0.1:9099".parse::<Address>().unwrap_err();
/// assert!(err.to_string().contains("tcp://host:port"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// A TCP `host:port`; the host may be a name, an IPv4 or a bracketed IPv6 address.
    Tcp(String),
    /// A Unix-domain socket path.
    Unix(PathBuf),
}

const FORMS: &str = "expected `tcp://host:port` or `unix:///path/to/socket`";

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
///         Address::Unix(_) => None,
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
