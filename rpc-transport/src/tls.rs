//! TLS over TCP and Unix sockets, with rustls (the `tls` feature).
//!
//! You bring your own rustls configuration and nothing is hidden:
//!
//! - [`ServerBuilder::tls`](crate::ServerBuilder::tls) takes a
//!   [`rustls::ServerConfig`]: every accepted connection does the TLS
//!   handshake first, then the protocol's own handshake inside TLS. With a
//!   client-certificate verifier in that configuration (mutual TLS), the
//!   verified client certificate is the connection's
//!   [`PeerIdentity`], seen by handlers as
//!   [`CallContext::peer_identity`](rpc_core::CallContext::peer_identity)
//!   and on the server's [`Event::Connected`](crate::Event::Connected) peer
//!   as [`Peer::peer_identity`](rpc_core::Peer::peer_identity).
//! - [`Connect::tls`](crate::Connect::tls) takes a [`rustls::ClientConfig`]
//!   and the name the server's certificate must carry; a reconnecting
//!   client does the TLS handshake again on every connection.
//! - [`CertificateInfo`] reads the subject, the issuer and the alternative
//!   names out of a [`PeerIdentity`].
//!
//! [`rustls`] and [`tokio_rustls`] are re-exported so that your
//! configuration is built with the very versions this crate uses. They are
//! built with the *ring* crypto provider only (it compiles with a plain C
//! compiler; aws-lc-rs would need cmake), so `ServerConfig::builder()` and
//! `ClientConfig::builder()` pick it by themselves. If something else in
//! your program enables another provider, name one explicitly with
//! `builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))`.
//!
//! See `docs/tls.md` for a guide: making a test CA, what each side sees
//! when TLS fails, and how TLS and the shared secret combine.
//!
//! # Examples
//!
//! A server that requires client certificates from one CA, and a client
//! that has one (the certificates are made on the spot with `rcgen`; a real
//! program reads PEM files with
//! [`PemObject`](rustls::pki_types::pem::PemObject)):
//!
//! ```
//! use std::sync::Arc;
//! use rpc_core::{expose, CallContext};
//! use rpc_transport::tls::rustls::{self, pki_types::PrivateKeyDer, server::WebPkiClientVerifier};
//! use rpc_transport::tls::CertificateInfo;
//!
//! pub struct Whoami;
//! #[expose]
//! impl Whoami {
//!     /// The subject of the caller's verified certificate.
//!     pub fn whoami(&self, cx: CallContext) -> Option<String> {
//!         let info = CertificateInfo::from_identity(cx.peer_identity()?)?;
//!         Some(info.subject().to_owned())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
//! # let ca_key = KeyPair::generate()?;
//! # let mut ca = CertificateParams::new(Vec::new())?;
//! # ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
//! # ca.distinguished_name.push(DnType::CommonName, "test CA");
//! # let ca_cert = ca.self_signed(&ca_key)?;
//! # let issuer = Issuer::new(ca, ca_key);
//! # let leaf = |name: &str| -> Result<_, rcgen::Error> {
//! #     let key = KeyPair::generate()?;
//! #     let mut p = CertificateParams::new(vec![name.to_string()])?;
//! #     p.distinguished_name.push(DnType::CommonName, name);
//! #     let cert = p.signed_by(&key, &issuer)?;
//! #     Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key.serialize_der().into())))
//! # };
//! # let (server_cert, server_key) = leaf("localhost")?;
//! # let (client_cert, client_key) = leaf("worker-7")?;
//! let mut roots = rustls::RootCertStore::empty();
//! roots.add(ca_cert.der().clone())?; // the CA both sides trust
//! let roots = Arc::new(roots);
//!
//! let server_config = rustls::ServerConfig::builder()
//!     .with_client_cert_verifier(WebPkiClientVerifier::builder(roots.clone()).build()?)
//!     .with_single_cert(vec![server_cert], server_key)?;
//! let server = rpc_transport::Server::builder()
//!     .expose(Whoami)
//!     .tls(server_config)
//!     .bind("tcp://127.0.0.1:0")
//!     .await?;
//!
//! let client_config = rustls::ClientConfig::builder()
//!     .with_root_certificates(roots)
//!     .with_client_auth_cert(vec![client_cert], client_key)?;
//! let peer = rpc_transport::connect(server.local_addr())
//!     .tls(client_config, "localhost")
//!     .await?;
//! let me = WhoamiClient::new(&peer).whoami().await?;
//! assert_eq!(me.as_deref(), Some("CN=worker-7"));
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use rpc_core::{AttachOptions, DisconnectReason, IoError, PeerIdentity, RpcError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tracing::debug;

pub use rustls;
pub use tokio_rustls;

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::address::Address;
use crate::stream::{Explain, Socket, Stream};

/// The first byte of every TLS connection: a handshake record.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// How long a server keeps reading from a client whose TLS handshake it
/// rejected, so that the client reads the alert before the socket closes
/// (a socket closed with unread bytes is reset, and a reset can overtake
/// the alert).
const LINGER: Duration = Duration::from_millis(300);

/// The verified chain of a TLS connection, as the connection's identity.
fn identity(certs: Option<&[CertificateDer<'static>]>) -> Option<PeerIdentity> {
    PeerIdentity::from_chain(certs?.iter().map(|c| c.as_ref().to_vec()))
}

/// The rustls error inside an I/O error, if it is one.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// The dialing side's TLS: its configuration and the name the server's
/// certificate must carry.
#[derive(Clone)]
pub(crate) struct ClientTls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.name)
            .finish()
    }
}

impl ClientTls {
    /// TLS with `config`, expecting a server certificate for `name`.
    pub(crate) fn new(config: Arc<ClientConfig>, name: String) -> Result<ClientTls, RpcError> {
        let name = ServerName::try_from(name.clone()).map_err(|_| {
            RpcError::BadAddress(format!(
                "`{name}` is not a valid TLS server name (expected a DNS name or an IP address)"
            ))
        })?;
        Ok(ClientTls {
            connector: TlsConnector::from(config),
            name,
        })
    }

    /// The TLS handshake over a freshly dialed socket to `addr`.
    pub(crate) async fn connect(&self, socket: Socket, addr: &Address) -> Result<Stream, RpcError> {
        let tls = self
            .connector
            .connect(self.name.clone(), socket)
            .await
            .map_err(|e| {
                let context = match rustls_error(&e) {
                    // What came back was not TLS: a plain server writes its
                    // own opening at once.
                    Some(rustls::Error::InvalidMessage(_)) => format!(
                        "TLS handshake with {addr}: the server did not answer in TLS (does it serve without TLS?)"
                    ),
                    _ => format!("TLS handshake with {addr}"),
                };
                RpcError::Io(IoError::new(context, e))
            })?;
        let identity = identity(tls.get_ref().1.peer_certificates());
        let (rd, wr) = tokio::io::split(tls);
        let seen = Seen::default();
        let explain = TlsExplain {
            addr: addr.clone(),
            seen: seen.clone(),
        };
        Ok(Stream {
            rd: Box::new(Watched { inner: rd, seen }),
            wr: Box::new(wr),
            options: AttachOptions::new().peer_identity(identity),
            explain: Explain { tls: Some(explain) },
        })
    }
}

/// The last TLS error the reader of a client connection ran into.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Option<rustls::Error>>>);

/// A read half that remembers TLS errors (alerts) it reads.
///
/// With TLS 1.3 a client's handshake is over before the server has checked
/// the client's certificate; a server that rejects it says so in an alert
/// that arrives where the protocol's handshake expects the server's opening.
/// The protocol reports a broken handshake; [`TlsExplain`] turns that back into
/// the TLS error it was.
struct Watched<R> {
    inner: R,
    seen: Seen,
}

impl<R: AsyncRead + Unpin> AsyncRead for Watched<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Err(e)) = &polled {
            if let Some(tls) = rustls_error(e) {
                let mut seen = self.seen.0.lock().unwrap_or_else(|p| p.into_inner());
                *seen = Some(tls.clone());
            }
        }
        polled
    }
}

/// Turns a failed protocol handshake over TLS into the TLS error behind it,
/// if there was one.
pub(crate) struct TlsExplain {
    addr: Address,
    seen: Seen,
}

impl TlsExplain {
    /// `e`, or the TLS error that caused it.
    pub(crate) fn explain(&self, e: RpcError) -> RpcError {
        let seen = self.seen.0.lock().unwrap_or_else(|p| p.into_inner()).take();
        match seen {
            Some(tls) => RpcError::Io(IoError::new(
                format!("TLS handshake with {}", self.addr),
                io::Error::new(io::ErrorKind::InvalidData, tls),
            )),
            None => e,
        }
    }
}

/// The accepting side's TLS.
pub(crate) struct ServerTls {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

/// What an accepted socket turned out to be.
pub(crate) enum Accepted {
    /// A TLS connection, handshake done.
    Tls(Stream),
    /// A client that did not start a TLS handshake (a plain client of this
    /// protocol, say): the stream as it came, so that it can be told in
    /// the protocol it speaks that this server requires TLS.
    Plain(Stream),
}

impl ServerTls {
    /// TLS with `config`.
    pub(crate) fn new(config: Arc<ServerConfig>) -> ServerTls {
        ServerTls {
            acceptor: TlsAcceptor::from(config),
        }
    }

    /// Runs the TLS handshake on an accepted socket. On failure, the
    /// reason the connection ended (the client hears a TLS alert).
    pub(crate) async fn accept(&self, mut socket: Socket) -> Result<Accepted, DisconnectReason> {
        // Every TLS client speaks first, and its first byte is always the
        // same; a client of the plain protocol says something else.
        let mut first = [0u8; 1];
        let n = socket
            .read(&mut first)
            .await
            .map_err(|e| DisconnectReason::Io(format!("reading the TLS handshake: {e}")))?;
        if n == 0 {
            return Err(DisconnectReason::Protocol(
                "the client closed the connection before the TLS handshake".into(),
            ));
        }
        let io = Prefixed {
            first: Some(first[0]),
            inner: socket,
        };
        if first[0] != TLS_HANDSHAKE_RECORD {
            let (rd, wr) = tokio::io::split(io);
            return Ok(Accepted::Plain(Stream {
                rd: Box::new(rd),
                wr: Box::new(wr),
                options: AttachOptions::new(),
                explain: Explain::default(),
            }));
        }
        match self.acceptor.accept(io).into_fallible().await {
            Ok(tls) => {
                let identity = identity(tls.get_ref().1.peer_certificates());
                let (rd, wr) = tokio::io::split(tls);
                Ok(Accepted::Tls(Stream {
                    rd: Box::new(rd),
                    wr: Box::new(wr),
                    options: AttachOptions::new().peer_identity(identity),
                    explain: Explain::default(),
                }))
            }
            Err((e, io)) => {
                // The alert is written; keep the socket open a moment so
                // the client reads it.
                tokio::spawn(linger(io));
                Err(DisconnectReason::Io(format!("TLS handshake failed: {e}")))
            }
        }
    }
}

/// Closes our side of a rejected connection gracefully: shuts down writing,
/// then reads what the client still sends until it hangs up, for at most
/// [`LINGER`].
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) {
    let drain = async {
        let _ = io.shutdown().await;
        let mut sink = [0u8; 1024];
        while matches!(io.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    if tokio::time::timeout(LINGER, drain).await.is_err() {
        debug!("a rejected TLS client kept its connection open; closing it");
    }
}

/// A socket with the byte already read from it put back in front.
struct Prefixed<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(b) = self.first.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// What a certificate says about its holder: the subject, the issuer, the
/// alternative names and the validity, read from a [`PeerIdentity`] (or any
/// DER certificate) with `x509-parser`.
///
/// The names are as the certificate states them; that the certificate is
/// genuine is what the TLS layer verified when the connection was set up.
///
/// # Examples
///
/// ```
/// use rpc_core::PeerIdentity;
/// use rpc_transport::tls::CertificateInfo;
///
/// # fn main() -> Result<(), rcgen::Error> {
/// // A certificate as a client would present it (made here with rcgen).
/// let key = rcgen::KeyPair::generate()?;
/// let mut params = rcgen::CertificateParams::new(vec!["worker-7.example".to_string()])?;
/// params.distinguished_name.push(rcgen::DnType::CommonName, "worker-7");
/// params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme");
/// let cert = params.self_signed(&key)?;
///
/// let identity = PeerIdentity::from_chain([cert.der().to_vec()]).unwrap();
/// let info = CertificateInfo::from_identity(&identity).unwrap();
/// assert_eq!(info.common_name(), Some("worker-7"));
/// assert_eq!(info.subject(), "CN=worker-7, O=Acme");
/// assert_eq!(info.dns_names(), ["worker-7.example"]);
/// assert!(CertificateInfo::from_der(b"not a certificate").is_none());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    subject: String,
    common_name: Option<String>,
    issuer: String,
    serial: String,
    dns_names: Vec<String>,
    ip_addresses: Vec<IpAddr>,
    emails: Vec<String>,
    uris: Vec<String>,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl CertificateInfo {
    /// Reads the peer's own (end-entity) certificate of `identity`.
    ///
    /// `None` when it is not an X.509 certificate this parser reads (which
    /// a certificate that rustls verified always is).
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_core::CallContext;
    /// use rpc_transport::tls::CertificateInfo;
    ///
    /// /// The caller's host names, as its verified certificate states them.
    /// fn caller_hosts(cx: &CallContext) -> Vec<String> {
    ///     cx.peer_identity()
    ///         .and_then(CertificateInfo::from_identity)
    ///         .map(|info| info.dns_names().to_vec())
    ///         .unwrap_or_default()
    /// }
    /// ```
    pub fn from_identity(identity: &PeerIdentity) -> Option<CertificateInfo> {
        CertificateInfo::from_der(identity.certificate())
    }

    /// Reads one DER-encoded certificate; `None` when it does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use rpc_transport::tls::CertificateInfo;
    ///
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])?.self_signed(&key)?;
    /// let info = CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.ip_addresses(), ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    /// assert!(CertificateInfo::from_der(&[0x30, 0x00]).is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn from_der(der: &[u8]) -> Option<CertificateInfo> {
        use x509_parser::extensions::GeneralName;
        use x509_parser::prelude::{FromDer, X509Certificate};

        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let mut info = CertificateInfo {
            subject: cert.subject().to_string(),
            common_name,
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            emails: Vec::new(),
            uris: Vec::new(),
            not_before: system_time(cert.validity().not_before.timestamp()),
            not_after: system_time(cert.validity().not_after.timestamp()),
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(n) => info.dns_names.push((*n).to_owned()),
                    GeneralName::RFC822Name(n) => info.emails.push((*n).to_owned()),
                    GeneralName::URI(n) => info.uris.push((*n).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_address(bytes) {
                            info.ip_addresses.push(ip);
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(info)
    }

    /// The subject's distinguished name, as text (`CN=worker-7, O=Acme`).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// params.distinguished_name = rcgen::DistinguishedName::new();
    /// params.distinguished_name.push(rcgen::DnType::CommonName, "svc");
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.subject(), "CN=svc");
    /// # Ok(())
    /// # }
    /// ```
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's first common name (CN), if it has one.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// params.distinguished_name = rcgen::DistinguishedName::new();
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.common_name(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn common_name(&self) -> Option<&str> {
        self.common_name.as_deref()
    }

    /// The issuer's distinguished name, as text (the CA that signed it).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// params.distinguished_name = rcgen::DistinguishedName::new();
    /// params.distinguished_name.push(rcgen::DnType::CommonName, "self");
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.issuer(), "CN=self"); // self-signed: its own issuer
    /// # Ok(())
    /// # }
    /// ```
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The serial number, as colon-separated hex bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0xab]));
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.serial(), "01:ab");
    /// # Ok(())
    /// # }
    /// ```
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// The DNS names among the subject alternative names.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let names = vec!["a.example".to_string(), "b.example".to_string()];
    /// let cert = rcgen::CertificateParams::new(names)?.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.dns_names(), ["a.example", "b.example"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn dns_names(&self) -> &[String] {
        &self.dns_names
    }

    /// The IP addresses among the subject alternative names.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::net::IpAddr;
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(vec!["::1".to_string()])?.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.ip_addresses(), ["::1".parse::<IpAddr>().unwrap()]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn ip_addresses(&self) -> &[IpAddr] {
        &self.ip_addresses
    }

    /// The e-mail addresses (RFC 822 names) among the subject alternative
    /// names.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// params.subject_alt_names.push(rcgen::SanType::Rfc822Name("ops@example.com".try_into()?));
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.emails(), ["ops@example.com"]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn emails(&self) -> &[String] {
        &self.emails
    }

    /// The URIs among the subject alternative names (SPIFFE ids, say).
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let mut params = rcgen::CertificateParams::new(Vec::new())?;
    /// let id = "spiffe://example.org/worker";
    /// params.subject_alt_names.push(rcgen::SanType::URI(id.try_into()?));
    /// let cert = params.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert_eq!(info.uris(), [id]);
    /// # Ok(())
    /// # }
    /// ```
    pub fn uris(&self) -> &[String] {
        &self.uris
    }

    /// When the certificate becomes valid.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::SystemTime;
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(Vec::new())?.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert!(info.not_before() < SystemTime::now());
    /// # Ok(())
    /// # }
    /// ```
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the certificate expires.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::SystemTime;
    /// # fn main() -> Result<(), rcgen::Error> {
    /// let key = rcgen::KeyPair::generate()?;
    /// let cert = rcgen::CertificateParams::new(Vec::new())?.self_signed(&key)?;
    /// let info = rpc_transport::tls::CertificateInfo::from_der(cert.der()).unwrap();
    /// assert!(info.not_after() > SystemTime::now());
    /// # Ok(())
    /// # }
    /// ```
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }
}

/// Seconds since the Unix epoch (negative before it) as a `SystemTime`.
fn system_time(secs: i64) -> SystemTime {
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

/// An IP address SAN: 4 or 16 bytes.
fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}
