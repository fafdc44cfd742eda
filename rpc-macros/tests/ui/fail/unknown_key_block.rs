//! An option that does not exist, on the impl block; and a method option
//! written on the block.

use rpc_core::expose;

pub struct Calc;

#[expose(name = "calc", version = 2)]
impl Calc {
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

pub struct Other;

#[expose(skip)]
impl Other {
    pub fn ping(&self) {}
}

fn main() {}
