//! A Pyro-style echo server: exposes an `Echo` object (`echo`, `error`,
//! `slow`) and prints who connects and disconnects until Ctrl-C, then shuts
//! down gracefully, letting calls in flight finish.
//!
//! Run it with `cargo run -p rpc-examples --bin echo_server -- --port 9099`
//! and call it with the `echo_client` example. Add `--unix /tmp/echo.sock` to
//! listen on a Unix socket, `--secret-file FILE` (or `RPC_SECRET` in the
//! environment) to require a shared secret,
//! `--max-connections N`, `--max-frame BYTES` and `--handshake-timeout
//! SECONDS` to set those limits, `-v` to see the library's debug log.
//!
//! For TLS, give `--tls-cert server.pem --tls-key server.key.pem` (PEM
//! files; `cargo run -p rpc-examples --bin make_test_ca` makes a test set),
//! and add `--tls-ca ca.pem` to require client certificates signed by that
//! CA: each connection then shows the client certificate's subject.
//!
//! Like Pyro's `-n`, `--register NAME --names tcp://127.0.0.1:9090`
//! registers the server with a name service (the `names` example) once it
//! listens, so clients can dial `name://NAME`; the name goes away when the
//! server stops. `--names` defaults to `RPC_NAMES` in the environment; the
//! name service is reached with the same shared secret as the server's, and
//! without TLS. `--advertise ADDR` registers another address than the one
//! bound (when listening on 0.0.0.0, say).

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rpc_core::{IoError, PeerConfig, RpcError};
use rpc_examples::echo::Echo;
use rpc_transport::names::Names;
use rpc_transport::tls::CertificateInfo;
use rpc_transport::{Address, Event, Server};

#[derive(Parser)]
#[command(about = "An echo server; stop it with Ctrl-C")]
struct Args {
    /// The host or IP address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The TCP port to listen on.
    #[arg(long, default_value_t = 9099)]
    port: u16,
    /// Listen on this Unix socket instead of TCP.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// Require clients to authenticate with the shared secret in this file
    /// (default: the `RPC_SECRET` environment variable, if set).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Refuse authenticated connections beyond this many at once.
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// The largest frame accepted from a client, in bytes (default 16 MiB).
    #[arg(long, value_name = "BYTES")]
    max_frame: Option<u32>,
    /// How long a client may take to finish its handshake, in seconds
    /// (default 10).
    #[arg(long, value_name = "SECONDS")]
    handshake_timeout: Option<f64>,
    /// Serve over TLS with this certificate (PEM; with `--tls-key`).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM; needs `--tls-cert`).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Register with a name service under this name once listening.
    #[arg(long, value_name = "NAME")]
    register: Option<String>,
    /// The name service to register with (default: the `RPC_NAMES`
    /// environment variable).
    #[arg(long, value_name = "ADDR", requires = "register")]
    names: Option<String>,
    /// The address to register, when clients must dial another than the
    /// one bound (default: the address bound).
    #[arg(long, value_name = "ADDR", requires = "register")]
    advertise: Option<String>,
    /// Print the library's debug log.
    #[arg(short, long)]
    verbose: bool,
}

/// An error of this program's own, as the library reports errors.
fn invalid(message: String) -> RpcError {
    RpcError::Io(IoError::new(
        message,
        std::io::ErrorKind::InvalidInput.into(),
    ))
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter("rpc_core=debug,rpc_transport=debug")
            .init();
    }
    let addr = match args.unix {
        Some(path) => Address::Unix(path),
        None => Address::Tcp(format!("{}:{}", args.host, args.port)),
    };

    let mut config = PeerConfig::default();
    if let Some(bytes) = args.max_frame {
        config = config.max_frame(bytes);
    }
    if let Some(secs) = args.handshake_timeout {
        config = config.handshake_timeout(Duration::from_secs_f64(secs.max(0.001)));
    }
    let mut server = Server::builder().expose(Echo).config(config);
    let secret = rpc_examples::secret::load(args.secret_file.as_deref()).map_err(invalid)?;
    if let Some(secret) = &secret {
        server = server.secret(secret);
    }
    if let Some(n) = args.max_connections {
        server = server.max_connections(n);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = rpc_examples::pem::server_config(cert, key, args.tls_ca.as_deref())?;
        server = server.tls(tls);
    }
    let server = server.bind(addr).await?;
    println!("echo server listening on {}", server.local_addr());
    match (&args.tls_cert, &args.tls_ca) {
        (Some(_), Some(ca)) => println!(
            "over TLS; clients need a certificate signed by {}",
            ca.display()
        ),
        (Some(_), None) => println!("over TLS"),
        _ => {}
    }
    if secret.is_some() {
        println!("clients must authenticate with the shared secret");
    }
    // Kept until the server stops: the name lives as long as it.
    let _registration = match &args.register {
        Some(name) => {
            let names = match &args.names {
                Some(addr) => Names::at(addr),
                None => Names::from_env().ok_or_else(|| {
                    invalid(format!(
                        "--register needs --names ADDR or {} in the environment",
                        rpc_transport::names::ENV
                    ))
                })?,
            };
            let names = match &secret {
                Some(secret) => names.secret(secret),
                None => names,
            };
            let advertised = args
                .advertise
                .clone()
                .unwrap_or_else(|| server.local_addr().to_string());
            let metadata = [("kind".to_string(), "echo".to_string())].into();
            let registration = names
                .register(name, &advertised, metadata)
                .await?
                .map_err(|e| invalid(format!("registering `{name}`: {e}")))?;
            println!("registered as name://{name} ({advertised}) with the name service");
            Some(registration)
        }
        None => None,
    };
    println!("press Ctrl-C to stop");

    let mut events = server.events();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(Event::Connected(peer)) => {
                    println!(
                        "connection {} opened by {}",
                        peer.connection_id(),
                        peer.remote_name().unwrap_or_else(|| "an anonymous client".into()),
                    );
                    // With --tls-ca: who the client's verified certificate says it is.
                    let certificate = peer.peer_identity();
                    if let Some(info) = certificate.as_ref().and_then(CertificateInfo::from_identity) {
                        println!("  its certificate: {} (issued by {})", info.subject(), info.issuer());
                    }
                }
                Some(Event::Disconnected { id, reason, remote, .. }) => {
                    println!("connection {id} from {remote} closed: {reason}")
                }
                Some(other) => println!("{other:?}"),
                None => break,
            },
            _ = &mut ctrl_c => {
                println!("Ctrl-C: shutting down (calls in flight get up to 5 s)");
                break;
            }
        }
    }
    server.shutdown(Duration::from_secs(5)).await;
    println!("echo server stopped");
    Ok(())
}
