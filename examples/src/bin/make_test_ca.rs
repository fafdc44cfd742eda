//! Writes a test PKI for the TLS examples into a directory, as PEM files:
//! a CA certificate (`ca.pem`), a server certificate and key
//! (`server.pem`, `server.key.pem`) and a client certificate and key
//! (`client.pem`, `client.key.pem`), all made on the spot with rcgen.
//!
//! ```text
//! cargo run -p rpc-examples --bin make_test_ca -- --out certs
//! cargo run -p rpc-examples --bin echo_server -- \
//!     --tls-cert certs/server.pem --tls-key certs/server.key.pem --tls-ca certs/ca.pem
//! cargo run -p rpc-examples --bin echo_client -- \
//!     --tls-ca certs/ca.pem --tls-cert certs/client.pem --tls-key certs/client.key.pem
//! ```
//!
//! The server certificate is valid for `localhost` and `127.0.0.1` (add
//! names with `--server-name`), the client certificate's subject is
//! `CN=echo-client` (`--client-name`). The CA's private key is not kept, so
//! nothing else can ever be signed by this CA; run it again for a new set.
//! For tests and demos only: a real deployment gets its certificates from
//! its own CA.

use std::error::Error;
use std::path::{Path, PathBuf};

use clap::Parser;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Parser)]
#[command(about = "Writes a test CA, a server and a client certificate (PEM) into a directory")]
struct Args {
    /// The directory to write into (created if missing).
    #[arg(long, default_value = "certs")]
    out: PathBuf,
    /// Names the server certificate is valid for (DNS names or IP
    /// addresses), besides `localhost` and `127.0.0.1`.
    #[arg(long = "server-name", value_name = "NAME")]
    server_names: Vec<String>,
    /// The common name of the client certificate.
    #[arg(long, default_value = "echo-client")]
    client_name: String,
}

fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    std::fs::create_dir_all(&args.out)?;

    // The CA: signs certificates, nothing else.
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::new(Vec::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "rpc test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    write(&args.out, "ca.pem", &ca_cert.pem())?;

    let mut server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    server_names.extend(args.server_names);
    let leaves = [
        (
            "server",
            "rpc test server",
            server_names,
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        (
            "client",
            args.client_name.as_str(),
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
    ];
    for (file, common_name, names, usage) in leaves {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &issuer)?;
        write(&args.out, &format!("{file}.pem"), &cert.pem())?;
        write(&args.out, &format!("{file}.key.pem"), &key.serialize_pem())?;
    }
    println!(
        "wrote ca.pem, server.pem, server.key.pem, client.pem, client.key.pem to {}",
        args.out.display()
    );
    Ok(())
}

/// Writes one PEM file; private keys are readable by their owner only.
fn write(dir: &Path, name: &str, pem: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if name.ends_with(".key.pem") {
        0o600
    } else {
        0o644
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(dir.join(name))?;
    file.write_all(pem.as_bytes())
}
