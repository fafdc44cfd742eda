//! Parameters must be plain names: the client stub reuses them.

use rpc_core::expose;

pub struct Geometry;

#[expose]
impl Geometry {
    pub fn add(&self, (a, b): (u32, u32)) -> u32 {
        a + b
    }

    pub fn by_ref(&self, ref n: u32) -> u32 {
        *n
    }
}

fn main() {}
