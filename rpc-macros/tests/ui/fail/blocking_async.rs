//! `blocking` goes on synchronous methods only.

use rpc_core::expose;

pub struct Store;

#[expose]
impl Store {
    #[expose(blocking)]
    pub async fn load(&self) -> u32 {
        0
    }

    #[expose(blocking = true)]
    pub fn save(&self) {}
}

fn main() {}
