//! A name service (Pyro's name server): servers register a name and their
//! address, clients look names up or dial `name://NAME`. A registration
//! lasts as long as the connection that made it. Runs until Ctrl-C and
//! prints every registration and removal.
//!
//! Run it with `cargo run -p rpc-examples --bin names -- --listen
//! tcp://127.0.0.1:9090`; then start `echo_server --register echo --names
//! tcp://127.0.0.1:9090` and call it with `echo_client --addr name://echo
//! --names tcp://127.0.0.1:9090`. `--secret-file FILE` (or `RPC_SECRET` in
//! the environment) requires a shared secret; `--tls-cert`, `--tls-key` and
//! `--tls-ca` serve over TLS as `echo_server` does; `--max-names-per-connection`
//! and `--max-names` set the limits; `-v` shows the library's debug log.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use rpc_core::{IoError, RpcError};
use rpc_transport::names::{Change, NameLimits, NameService};
use rpc_transport::{Event, Server};

#[derive(Parser)]
#[command(about = "A name service; stop it with Ctrl-C")]
struct Args {
    /// Where to listen: `tcp://host:port` or `unix:///path`.
    #[arg(long, default_value = "tcp://127.0.0.1:9090")]
    listen: String,
    /// Require clients to authenticate with the shared secret in this file
    /// (default: the `RPC_SECRET` environment variable, if set).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Serve over TLS with this certificate (PEM; with `--tls-key`).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM; needs `--tls-cert`).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_ca: Option<PathBuf>,
    /// Names one connection may hold at once (default 64).
    #[arg(long, value_name = "N")]
    max_names_per_connection: Option<usize>,
    /// Names the service holds in all (default 4096).
    #[arg(long, value_name = "N")]
    max_names: Option<usize>,
    /// Print the library's debug log.
    #[arg(short, long)]
    verbose: bool,
}

#[tokio::main]
async fn main() -> Result<(), RpcError> {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_env_filter("rpc_core=debug,rpc_transport=debug")
            .init();
    }
    let mut limits = NameLimits::default();
    if let Some(n) = args.max_names_per_connection {
        limits.max_names_per_connection = n;
    }
    if let Some(n) = args.max_names {
        limits.max_names = n;
    }
    let service = NameService::with_limits(limits);

    let mut server = Server::builder().expose(service.clone());
    let secret = rpc_examples::secret::load(args.secret_file.as_deref())
        .map_err(|m| RpcError::Io(IoError::new(m, std::io::ErrorKind::InvalidInput.into())))?;
    if let Some(secret) = &secret {
        server = server.secret(secret);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let tls = rpc_examples::pem::server_config(cert, key, args.tls_ca.as_deref())?;
        server = server.tls(tls);
    }
    let server = server.bind(args.listen.as_str()).await?;
    println!("name service listening on {}", server.local_addr());
    if args.tls_cert.is_some() {
        println!("over TLS");
    }
    if secret.is_some() {
        println!("clients must authenticate with the shared secret");
    }
    println!("press Ctrl-C to stop");

    // The same table, watched here: every registration and removal.
    let mut changes = std::pin::pin!(service.watch(String::new()));
    let mut events = server.events();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            change = changes.next() => match change {
                Some(Change::Registered(entry)) => {
                    println!("registered {} at {} {:?}", entry.name, entry.address, entry.metadata)
                }
                Some(Change::Removed { name, why }) => println!("removed {name} ({why:?})"),
                Some(Change::Missed(n)) => println!("({n} changes not shown)"),
                None => break,
            },
            event = events.recv() => match event {
                Some(Event::Disconnected { id, reason, remote }) => {
                    println!("connection {id} from {remote} closed: {reason}")
                }
                Some(_) => {}
                None => break,
            },
            _ = &mut ctrl_c => {
                println!("Ctrl-C: shutting down");
                break;
            }
        }
    }
    server.shutdown(Duration::from_secs(2)).await;
    println!("name service stopped");
    Ok(())
}
