//! Test certificates, made at run time with rcgen (nothing is committed): a
//! CA, certificates it signs, and the rustls configurations the tests use.

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rpc_transport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rpc_transport::tls::rustls::server::WebPkiClientVerifier;
use rpc_transport::tls::rustls::{ClientConfig, RootCertStore, ServerConfig};

/// A certificate authority for tests.
pub struct Ca {
    cert: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], with its private key.
pub struct Leaf {
    /// The certificate, then the CA's (what a peer presents).
    pub chain: Vec<CertificateDer<'static>>,
    key: Vec<u8>,
}

impl Leaf {
    /// The private key, PKCS#8.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key.clone().into())
    }
}

impl Ca {
    /// A new CA whose subject is `CN=<name>`.
    ///
    /// # Panics
    ///
    /// When rcgen fails (this is test code).
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's own certificate.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// A trust store holding only this CA.
    ///
    /// # Panics
    ///
    /// When rustls refuses the certificate.
    pub fn roots(&self) -> Arc<RootCertStore> {
        let mut roots = RootCertStore::empty();
        roots.add(self.cert()).unwrap();
        Arc::new(roots)
    }

    /// A certificate for `CN=<common_name>` valid for `names` (DNS names
    /// or IP addresses), usable by a server and by a client.
    ///
    /// # Panics
    ///
    /// When rcgen fails.
    pub fn issue(&self, common_name: &str, names: &[&str]) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.cert()],
            key: key.serialize_der(),
        }
    }

    /// The server certificate of most tests: `CN=rpc test server`, valid
    /// for `localhost` and `127.0.0.1`.
    pub fn server_leaf(&self) -> Leaf {
        self.issue("rpc test server", &["localhost", "127.0.0.1"])
    }
}

/// A server presenting `leaf`; with `clients`, requiring client
/// certificates signed by that CA.
///
/// # Panics
///
/// When rustls refuses the configuration.
pub fn server_config(leaf: &Leaf, clients: Option<&Ca>) -> Arc<ServerConfig> {
    let builder = ServerConfig::builder();
    let builder = match clients {
        Some(ca) => builder
            .with_client_cert_verifier(WebPkiClientVerifier::builder(ca.roots()).build().unwrap()),
        None => builder.with_no_client_auth(),
    };
    Arc::new(
        builder
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap(),
    )
}

/// A server presenting `leaf` that verifies a client certificate signed by
/// `clients` when one is offered, and lets clients without one in.
///
/// # Panics
///
/// When rustls refuses the configuration.
pub fn server_config_optional_clients(leaf: &Leaf, clients: &Ca) -> Arc<ServerConfig> {
    let verifier = WebPkiClientVerifier::builder(clients.roots())
        .allow_unauthenticated()
        .build()
        .unwrap();
    Arc::new(
        ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(leaf.chain.clone(), leaf.key())
            .unwrap(),
    )
}

/// A client trusting `trust`; presenting `identity` when given.
///
/// # Panics
///
/// When rustls refuses the configuration.
pub fn client_config(trust: &Ca, identity: Option<&Leaf>) -> Arc<ClientConfig> {
    let builder = ClientConfig::builder().with_root_certificates(trust.roots());
    Arc::new(match identity {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain.clone(), leaf.key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    })
}
