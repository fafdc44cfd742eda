//! This framework (`rpc-core` + `rpc-transport`), as a user would write it:
//! an `#[expose]`d impl block, `Server::builder().expose(..).bind(..)` and
//! `connect(..)` with the generated typed client.

// `#[expose]` exposes `pub fn`s, and the generated client is `pub`; in
// this binary crate none of that is reachable from outside.
#![allow(unreachable_pub)]

use futures::future::BoxFuture;
use futures::FutureExt;

use crate::harness::{Backend, BoxError, Client, Endpoint};

/// The benchmark service.
pub struct Bench;

#[rpc_core::expose]
impl Bench {
    /// Returns `a + b` (wrapping).
    pub fn add(&self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    /// Returns `data` unchanged.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

/// This framework, as a [`Backend`].
pub(crate) struct Ours;

/// A connection of this framework. Clones share the connection.
#[derive(Clone)]
pub(crate) struct OursClient {
    /// The generated typed stub over the connected peer.
    stub: BenchClient,
}

impl Client for OursClient {
    async fn add(&self, a: i32, b: i32) -> Result<i32, BoxError> {
        Ok(self.stub.add(a, b).await?)
    }

    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        Ok(self.stub.echo(data).await?)
    }
}

impl Backend for Ours {
    const NAME: &'static str = "ours";
    type Client = OursClient;

    async fn bind(listen: &Endpoint) -> Result<(Endpoint, BoxFuture<'static, ()>), BoxError> {
        let builder = rpc_transport::Server::builder().expose(Bench);
        let (server, local) = match listen {
            Endpoint::Tls { addr, .. } => {
                let server = builder
                    .tls(crate::tls::server_config()?)
                    .bind(format!("tcp://{addr}"))
                    .await?;
                let rpc_transport::Address::Tcp(bound) = server.local_addr() else {
                    return Err("a TLS server bound a non-TCP address".into());
                };
                let local = Endpoint::Tls {
                    addr: bound.parse()?,
                    ca: Vec::new(),
                };
                (server, local)
            }
            _ => {
                let server = builder.bind(listen.to_string().as_str()).await?;
                let local: Endpoint = server.local_addr().to_string().parse()?;
                (server, local)
            }
        };
        // The server accepts in its own tasks; keep it alive for as long
        // as the process serves.
        let hold = async move {
            let _server = server;
            std::future::pending::<()>().await
        };
        Ok((local, hold.boxed()))
    }

    async fn connect(addr: &Endpoint) -> Result<OursClient, BoxError> {
        let peer = match addr {
            Endpoint::Tls { addr, ca } => {
                let tls = crate::tls::client_config(ca)?;
                rpc_transport::connect(format!("tcp://{addr}"))
                    .tls(tls, crate::tls::SERVER_NAME)
                    .await?
            }
            _ => rpc_transport::connect(addr.to_string().as_str()).await?,
        };
        Ok(OursClient {
            stub: BenchClient::new(&peer),
        })
    }
}
