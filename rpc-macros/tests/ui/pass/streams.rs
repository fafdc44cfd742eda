//! Streams in exposed signatures: returned, taken, both, sync and async,
//! with a context; the stub's types are checked below.

use futures::Stream;
use rpc_core::{expose, CallContext, Peer, RpcError, RpcStream};

pub struct Pipes;

#[expose]
impl Pipes {
    pub fn out(&self, n: u32) -> impl Stream<Item = u32> + Send + 'static {
        futures::stream::iter(0..n)
    }

    pub async fn out_later(&self, cx: CallContext) -> impl Stream<Item = String> + Send + 'static {
        futures::stream::iter([cx.method().to_string()])
    }

    pub async fn take_in(&self, items: RpcStream<Vec<u8>>) -> usize {
        drop(items);
        0
    }

    pub fn both(&self, scale: u32, items: RpcStream<u32>) -> impl Stream<Item = u32> + Send + 'static {
        drop(items);
        futures::stream::iter([scale])
    }
}

#[allow(dead_code)]
async fn typed(peer: &Peer) -> Result<(), RpcError> {
    let pipes = PipesClient::new(peer);
    let _: RpcStream<u32> = pipes.out(3).await?;
    let _: RpcStream<String> = pipes.out_later().await?;
    let _: usize = pipes.take_in(futures::stream::iter([vec![1u8]])).await?;
    let _: RpcStream<u32> = pipes.both(2, futures::stream::empty()).await?;
    Ok(())
}

fn main() {}
