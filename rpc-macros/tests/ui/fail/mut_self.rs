//! `&mut self`: calls run concurrently on a shared object.

use rpc_core::expose;

pub struct Counter {
    n: u64,
}

#[expose]
impl Counter {
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

fn main() {}
