//! TLS configurations from PEM files (as `make_test_ca` writes them), for
//! the `echo_server` and `echo_client` examples.
//!
//! This is what a program using the `tls` feature writes: rustls reads the
//! PEM files ([`PemObject`]) and builds the configuration;
//! `rpc_transport` only takes the result.

use std::path::Path;
use std::sync::Arc;

use rpc_core::{IoError, RpcError};
use rpc_transport::tls::rustls::pki_types::pem::PemObject;
use rpc_transport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rpc_transport::tls::rustls::server::WebPkiClientVerifier;
use rpc_transport::tls::rustls::{self, ClientConfig, RootCertStore, ServerConfig};

/// An error about a TLS file or configuration, as the examples report it.
fn failed(what: String, e: impl std::fmt::Display) -> RpcError {
    RpcError::Io(IoError::new(what, std::io::Error::other(e.to_string())))
}

/// The certificates in a PEM file (a certificate, then its chain).
///
/// # Errors
///
/// When the file cannot be read or holds no certificate.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, RpcError> {
    let what = || format!("reading certificates from {}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| failed(what(), e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(what(), e))?;
    if certs.is_empty() {
        return Err(failed(what(), "no certificate in the file"));
    }
    Ok(certs)
}

/// The private key in a PEM file.
///
/// # Errors
///
/// When the file cannot be read or holds no key.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, RpcError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| failed(format!("reading a private key from {}", path.display()), e))
}

/// A trust store with the CA certificates of a PEM file.
///
/// # Errors
///
/// When the file cannot be read or a certificate is refused.
pub fn roots(ca: &Path) -> Result<Arc<RootCertStore>, RpcError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots
            .add(cert)
            .map_err(|e| failed(format!("trusting {}", ca.display()), e))?;
    }
    Ok(Arc::new(roots))
}

/// A server presenting `cert` with `key`; with `client_ca`, requiring
/// client certificates signed by that CA (mutual TLS).
///
/// # Errors
///
/// When a file cannot be read or rustls refuses the configuration.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, RpcError> {
    let builder = ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let verifier = WebPkiClientVerifier::builder(roots(ca)?)
                .build()
                .map_err(|e| failed("the client certificate verifier".into(), e))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certificates(cert)?, private_key(key)?)
        .map_err(|e| failed(format!("using {} and {}", cert.display(), key.display()), e))?;
    Ok(Arc::new(config))
}

/// A client trusting the CA in `ca`; presenting `identity` (certificate
/// and key files) when given.
///
/// # Errors
///
/// When a file cannot be read or rustls refuses the configuration.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, RpcError> {
    let builder = ClientConfig::builder().with_root_certificates(roots(ca)?);
    let config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e: rustls::Error| {
                failed(format!("using {} and {}", cert.display(), key.display()), e)
            })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
