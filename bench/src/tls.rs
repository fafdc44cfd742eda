//! The `tls` transport: TLS 1.3 over loopback TCP, with rustls and the ring
//! provider (the versions `rpc_transport::tls` re-exports) for every
//! implementation.
//!
//! Each server process makes its own CA and a certificate for `localhost`
//! signed by it (rcgen, at start) and prints the CA certificate (public,
//! hex-encoded DER) on the line after its address; the client trusts that
//! CA alone. No private key leaves the server process, and nothing is
//! written to disk.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use rpc_transport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rpc_transport::tls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use rpc_transport::tls::tokio_rustls::{client, server, TlsAcceptor, TlsConnector};
use tokio::net::TcpStream;

use crate::harness::BoxError;

/// The name the server's certificate is made for and the client expects.
pub(crate) const SERVER_NAME: &str = "localhost";

/// The server process's TLS, made once.
struct ServerSide {
    config: Arc<ServerConfig>,
    ca: Vec<u8>,
}

static SERVER: OnceLock<ServerSide> = OnceLock::new();

/// Makes a CA and a server certificate signed by it.
fn make() -> Result<ServerSide, BoxError> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec![SERVER_NAME.to_string()])?.signed_by(&key, &issuer)?;
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )?;
    Ok(ServerSide {
        config: Arc::new(config),
        ca: ca_cert.der().to_vec(),
    })
}

/// The server process's TLS, made on first use.
fn server_side() -> Result<&'static ServerSide, BoxError> {
    if let Some(s) = SERVER.get() {
        return Ok(s);
    }
    let made = make()?;
    Ok(SERVER.get_or_init(|| made))
}

/// The server's configuration.
pub(crate) fn server_config() -> Result<Arc<ServerConfig>, BoxError> {
    Ok(server_side()?.config.clone())
}

/// The server's CA certificate as one line of hex, for the client.
pub(crate) fn ca_line() -> Result<String, BoxError> {
    Ok(server_side()?
        .ca
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Reads the line [`ca_line`] printed.
pub(crate) fn parse_ca_line(line: &str) -> Result<Vec<u8>, BoxError> {
    let line = line.trim();
    if line.is_empty() || line.len() % 2 != 0 {
        return Err("the TLS server did not print its CA certificate".into());
    }
    (0..line.len())
        .step_by(2)
        .map(|i| Ok(u8::from_str_radix(&line[i..i + 2], 16)?))
        .collect()
}

/// A client configuration trusting `ca` alone.
pub(crate) fn client_config(ca: &[u8]) -> Result<Arc<ClientConfig>, BoxError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.to_vec()))?;
    Ok(Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// Dials `addr` and runs the TLS handshake (for the hand-written
/// implementations), with `TCP_NODELAY` when `nodelay`.
pub(crate) async fn connect(
    addr: SocketAddr,
    ca: &[u8],
    nodelay: bool,
) -> Result<client::TlsStream<TcpStream>, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    if nodelay {
        stream.set_nodelay(true)?;
    }
    let connector = TlsConnector::from(client_config(ca)?);
    Ok(connector.connect(SERVER_NAME.try_into()?, stream).await?)
}

/// The acceptor of the server process (for the hand-written
/// implementations).
pub(crate) fn acceptor() -> Result<TlsAcceptor, BoxError> {
    Ok(TlsAcceptor::from(server_config()?))
}

/// A server-side TLS stream.
pub(crate) type ServerStream = server::TlsStream<TcpStream>;
