//! tarpc, as its documentation shows it: `#[tarpc::service]`, the serde
//! transport with bincode (`tarpc::serde_transport` +
//! `tokio_serde::formats::Bincode`) over TCP or Unix sockets, default client
//! and server configs, one `BaseChannel` per connection whose requests are
//! each spawned as a task.

use std::future::Future;

use futures::future::{self, BoxFuture};
use futures::{FutureExt, StreamExt};
use tarpc::context;
use tarpc::serde_transport::{self, tcp, unix};
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;

use crate::harness::{Backend, BoxError, Client, Endpoint};

/// The service definition, in tarpc's own form.
#[tarpc::service]
pub(crate) trait BenchSvc {
    /// Returns `a + b` (wrapping).
    async fn add(a: i32, b: i32) -> i32;
    /// Returns `data` unchanged.
    async fn echo(data: Vec<u8>) -> Vec<u8>;
}

/// The server side of [`BenchSvc`].
#[derive(Clone)]
struct Svc;

impl BenchSvc for Svc {
    async fn add(self, _: context::Context, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }

    async fn echo(self, _: context::Context, data: Vec<u8>) -> Vec<u8> {
        data
    }
}

/// tarpc's transport on the server side of a TLS connection.
type ServerTransport = serde_transport::Transport<
    crate::tls::ServerStream,
    tarpc::ClientMessage<BenchSvcRequest>,
    tarpc::Response<BenchSvcResponse>,
    Bincode<tarpc::ClientMessage<BenchSvcRequest>, tarpc::Response<BenchSvcResponse>>,
>;

/// tarpc, as a [`Backend`].
pub(crate) struct Tarpc;

/// A tarpc client. Clones share the connection.
#[derive(Clone)]
pub(crate) struct TarpcClient(BenchSvcClient);

impl Client for TarpcClient {
    async fn add(&self, a: i32, b: i32) -> Result<i32, BoxError> {
        Ok(self.0.add(context::current(), a, b).await?)
    }

    async fn echo(&self, data: Vec<u8>) -> Result<Vec<u8>, BoxError> {
        Ok(self.0.echo(context::current(), data).await?)
    }
}

/// Spawns a future as its own task (what tarpc's examples do with each
/// request in execution).
async fn spawn(fut: impl Future<Output = ()> + Send + 'static) {
    tokio::spawn(fut);
}

impl Backend for Tarpc {
    const NAME: &'static str = "tarpc";
    type Client = TarpcClient;

    async fn bind(listen: &Endpoint) -> Result<(Endpoint, BoxFuture<'static, ()>), BoxError> {
        match listen {
            Endpoint::Tcp(addr) => {
                let incoming = tcp::listen(addr, Bincode::default).await?;
                let local = Endpoint::Tcp(incoming.local_addr());
                let serve = incoming
                    .filter_map(|conn| future::ready(conn.ok()))
                    .map(BaseChannel::with_defaults)
                    .for_each(|channel| {
                        tokio::spawn(channel.execute(Svc.serve()).for_each(spawn));
                        future::ready(())
                    });
                Ok((local, serve.boxed()))
            }
            Endpoint::Unix(path) => {
                let incoming = unix::listen(path, Bincode::default).await?;
                let local = Endpoint::Unix(path.clone());
                let serve = incoming
                    .filter_map(|conn| future::ready(conn.ok()))
                    .map(BaseChannel::with_defaults)
                    .for_each(|channel| {
                        tokio::spawn(channel.execute(Svc.serve()).for_each(spawn));
                        future::ready(())
                    });
                Ok((local, serve.boxed()))
            }
            Endpoint::Tls { addr, .. } => {
                // The serde transport over a TLS stream, framed as its TCP
                // transport is (and, like it, without TCP_NODELAY).
                let listener = tokio::net::TcpListener::bind(addr).await?;
                let local = Endpoint::Tls {
                    addr: listener.local_addr()?,
                    ca: Vec::new(),
                };
                let acceptor = crate::tls::acceptor()?;
                let serve = async move {
                    while let Ok((stream, _)) = listener.accept().await {
                        let acceptor = acceptor.clone();
                        tokio::spawn(async move {
                            let Ok(tls) = acceptor.accept(stream).await else {
                                return;
                            };
                            let transport: ServerTransport =
                                serde_transport::Transport::from((tls, Bincode::default()));
                            BaseChannel::with_defaults(transport)
                                .execute(Svc.serve())
                                .for_each(spawn)
                                .await;
                        });
                    }
                };
                Ok((local, serve.boxed()))
            }
        }
    }

    async fn connect(addr: &Endpoint) -> Result<TarpcClient, BoxError> {
        let config = tarpc::client::Config::default();
        let client = match addr {
            Endpoint::Tcp(addr) => {
                let transport = tcp::connect(addr, Bincode::default).await?;
                BenchSvcClient::new(config, transport).spawn()
            }
            Endpoint::Unix(path) => {
                let transport = unix::connect(path, Bincode::default).await?;
                BenchSvcClient::new(config, transport).spawn()
            }
            Endpoint::Tls { addr, ca } => {
                let tls = crate::tls::connect(*addr, ca, false).await?;
                let transport = serde_transport::Transport::from((tls, Bincode::default()));
                BenchSvcClient::new(config, transport).spawn()
            }
        };
        Ok(TarpcClient(client))
    }
}
