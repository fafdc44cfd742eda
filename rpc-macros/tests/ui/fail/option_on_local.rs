//! A `pub fn` without `self` is a local constructor, not a remote method, so
//! `#[expose(name = "...")]` on it (or on a private method) is a mistake.

use rpc_core::expose;

pub struct Counter;

#[expose]
impl Counter {
    #[expose(name = "create")]
    pub fn new() -> Self {
        Counter
    }

    #[expose(name = "secret")]
    fn hidden(&self) -> u32 {
        0
    }
}

fn main() {
    let _ = Counter::new().hidden();
}
