//! `self` by value, or through a pointer type other than `&`.

use std::sync::Arc;

use rpc_core::expose;

pub struct Counter;

#[expose]
impl Counter {
    pub fn consume(self) -> u64 {
        1
    }

    pub fn boxed(self: Box<Self>) -> u64 {
        2
    }

    pub fn shared(self: Arc<Self>) -> u64 {
        3
    }
}

fn main() {}
