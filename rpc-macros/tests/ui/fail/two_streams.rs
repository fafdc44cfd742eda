//! A method takes at most one stream from its caller.

use rpc_core::{expose, RpcStream};

pub struct Mixer;

#[expose]
impl Mixer {
    pub async fn mix(&self, left: RpcStream<u8>, right: RpcStream<u8>) -> u32 {
        drop((left, right));
        0
    }
}

fn main() {}
