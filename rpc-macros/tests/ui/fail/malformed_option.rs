//! Options with the wrong shape of value.

use rpc_core::expose;

pub struct Calc;

#[expose]
impl Calc {
    #[expose(name)]
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[expose(name = sub)]
    pub fn sub(&self, a: i64, b: i64) -> i64 {
        a - b
    }

    #[expose(skip = true)]
    pub fn local(&self) {}

    #[expose]
    pub fn bare(&self) {}
}

fn main() {}
