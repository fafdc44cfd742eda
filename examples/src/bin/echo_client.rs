//! A client of the `echo_server` example: a typed call, a typed application
//! error re-raised on this side, a call with a timeout, and a dynamic call by
//! name. `--probe` only checks whether a server answers.
//!
//! It needs the echo server running: start it first with
//! `cargo run -p rpc-examples --bin echo_server`, then run
//! `cargo run -p rpc-examples --bin echo_client` (with the same `--port`,
//! `--unix` or `--secret-file` flags as the server, if any; or `RPC_SECRET`
//! in the environment).
//!
//! Against a TLS server, give `--tls-ca ca.pem` (the CA to trust) and, when
//! the server requires client certificates, `--tls-cert client.pem
//! --tls-key client.key.pem`; `--tls-name` is the name the server's
//! certificate must carry (default: `--host`, or `localhost` with `--unix`).
//!
//! `--addr ADDR` gives the whole address instead of `--host`/`--port`/
//! `--unix`: `tcp://…`, `unix://…`, or `name://echo` for a server
//! registered with a name service (`echo_server --register echo`), looked
//! up in the name service given by `--names ADDR` (default: `RPC_NAMES` in
//! the environment), reached with the same shared secret.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use rpc_core::RpcError;
use rpc_examples::echo::{EchoClient, EchoError};
use rpc_transport::tls::CertificateInfo;
use rpc_transport::Address;

#[derive(Parser)]
#[command(about = "Calls the echo server")]
struct Args {
    /// The server's host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The server's TCP port.
    #[arg(long, default_value_t = 9099)]
    port: u16,
    /// Connect to this Unix socket instead of TCP.
    #[arg(long, value_name = "PATH")]
    unix: Option<PathBuf>,
    /// The whole address to connect to (`tcp://…`, `unix://…` or
    /// `name://NAME`), instead of `--host`/`--port`/`--unix`.
    #[arg(long, value_name = "ADDR", conflicts_with = "unix")]
    addr: Option<String>,
    /// The name service that `name://` addresses are looked up in
    /// (default: the `RPC_NAMES` environment variable).
    #[arg(long, value_name = "ADDR")]
    names: Option<String>,
    /// A file holding the shared secret the server requires (default: the
    /// `RPC_SECRET` environment variable, if set).
    #[arg(long, value_name = "FILE")]
    secret_file: Option<PathBuf>,
    /// Only check whether a server answers at the address.
    #[arg(long)]
    probe: bool,
    /// Connect over TLS, trusting this CA (PEM).
    #[arg(long, value_name = "PEM")]
    tls_ca: Option<PathBuf>,
    /// The client certificate for a server that requires one (PEM; with
    /// `--tls-key` and `--tls-ca`).
    #[arg(long, value_name = "PEM", requires_all = ["tls_key", "tls_ca"])]
    tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: `--host`, or
    /// `localhost` with `--unix`).
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    tls_name: Option<String>,
}

/// The TLS options of the command line.
struct Tls {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
    name: String,
}

impl Args {
    /// TLS, when `--tls-ca` was given.
    fn tls(&self) -> Option<Tls> {
        let default_name = match self.unix {
            Some(_) => "localhost".to_string(),
            None => self.host.clone(),
        };
        Some(Tls {
            ca: self.tls_ca.clone()?,
            identity: self.tls_cert.clone().zip(self.tls_key.clone()),
            name: self.tls_name.clone().unwrap_or(default_name),
        })
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let addr = match (&args.addr, &args.unix) {
        (Some(addr), _) => match addr.parse::<Address>() {
            Ok(addr) => addr,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        (None, Some(path)) => Address::Unix(path.clone()),
        (None, None) => Address::Tcp(format!("{}:{}", args.host, args.port)),
    };

    if args.probe {
        let up = rpc_transport::server_available(&addr, Duration::from_secs(2)).await;
        println!("{addr}: {}", if up { "available" } else { "not available" });
        return if up {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let secret = match rpc_examples::secret::load(args.secret_file.as_deref()) {
        Ok(secret) => secret,
        Err(m) => {
            eprintln!("error: {m}");
            return ExitCode::FAILURE;
        }
    };
    match run(&addr, secret.as_deref(), args.tls(), args.names.as_deref()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(RpcError::Io(e)) if e.context().starts_with("TLS handshake") => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
        Err(e) if e.is_connection_error() => {
            eprintln!("error: {e} (is echo_server running at {addr}?)");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(
    addr: &Address,
    secret: Option<&[u8]>,
    tls: Option<Tls>,
    names: Option<&str>,
) -> Result<(), RpcError> {
    let mut connect = rpc_transport::connect(addr).name("echo_client");
    if let Some(secret) = secret {
        connect = connect.secret(secret);
    }
    if let Some(names) = names {
        let mut names = rpc_transport::names::Names::at(names);
        if let Some(secret) = secret {
            names = names.secret(secret);
        }
        connect = connect.names(names);
    }
    if let Some(tls) = tls {
        let identity = tls
            .identity
            .as_ref()
            .map(|(c, k)| (c.as_path(), k.as_path()));
        let config = rpc_examples::pem::client_config(&tls.ca, identity)?;
        connect = connect.tls(config, tls.name);
    }
    let peer = connect.await?;
    println!("connected to {addr} as connection {}", peer.connection_id());
    let certificate = peer.peer_identity();
    if let Some(info) = certificate
        .as_ref()
        .and_then(CertificateInfo::from_identity)
    {
        println!("over TLS; the server's certificate: {}", info.subject());
    }
    let echo = EchoClient::new(&peer);

    // A typed call.
    let reply = echo.echo("hello, echo".into()).await?;
    println!("echo(\"hello, echo\") -> {reply:?}");

    // The outer `Result` is the RPC's, the inner one the method's own.
    match echo.error("something went wrong".into()).await? {
        Ok(()) => println!("error(..) unexpectedly succeeded"),
        Err(EchoError::Requested(message)) => {
            println!("error(..) raised EchoError::Requested({message:?})")
        }
    }

    // The timeout travels with the call: the server stops waiting too.
    let impatient = echo.clone().with_timeout(Duration::from_millis(100));
    println!(
        "slow(50) with a 100 ms timeout -> {:?}",
        impatient.slow(50).await
    );
    println!(
        "slow(500) with a 100 ms timeout -> {:?}",
        impatient.slow(500).await
    );

    // A dynamic call by name: the arguments are a tuple of the parameters.
    let reply: String = peer.call("Echo.echo", &("called by name",)).await?;
    println!("peer.call(\"Echo.echo\", ..) -> {reply:?}");
    let missing = peer.call::<String, _>("Echo.shout", &("hi",)).await;
    println!("peer.call(\"Echo.shout\", ..) -> {missing:?}");

    peer.close().await;
    Ok(())
}
