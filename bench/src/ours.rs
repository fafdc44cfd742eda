//! This framework (`rpc-core` + `rpc-transport`), as a user would write it:
//! an `#[expose]`d impl block, `Server::builder().expose(..).bind(..)` and
//! `connect(..)` with the generated typed client.

// `#[expose]` exposes `pub fn`s, and the generated client is `pub`; in
// this binary crate none of that is reachable from outside.
#![allow(unreachable_pub)]

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::harness::{
    check_item, item_bytes, Backend, BoxError, Client, Control, Endpoint, StreamClient,
};

/// One stream item: bytes that travel as one byte string, so they are
/// copied once into the frame and once out of it (serde's `Vec<u8>` would be
/// a sequence, one element at a time). Clones share the bytes.
#[derive(Clone, Debug)]
pub struct Chunk(pub Bytes);

impl Serialize for Chunk {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Chunk {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Takes a byte string.
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Chunk;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Chunk, E> {
                Ok(Chunk(Bytes::copy_from_slice(v)))
            }
        }
        d.deserialize_bytes(Visit)
    }
}

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

    /// A stream of `n` items of `size` bytes, every one sharing the same
    /// bytes (a server streaming from memory).
    pub fn chunks(&self, n: u32, size: u32) -> impl Stream<Item = Chunk> + Send + 'static {
        let item = Chunk(Bytes::from(item_bytes(size as usize)));
        futures::stream::repeat(item).take(n as usize)
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

impl StreamClient for OursClient {
    async fn read_stream(&self, n: u32, size: u32, ctl: &Arc<Control>) -> Result<u64, BoxError> {
        let mut items = self.stub.chunks(n, size).await?;
        let mut read = 0;
        while let Some(item) = items.next().await {
            let Chunk(bytes) = item?;
            check_item(bytes.len(), size)?;
            ctl.count_item(bytes.len());
            read += 1;
            if ctl.stopped() {
                // Dropping the stream cancels it.
                break;
            }
        }
        Ok(read)
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
