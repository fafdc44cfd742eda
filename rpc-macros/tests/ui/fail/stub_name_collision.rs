//! An exposed method named like an item of the client stub.

use rpc_core::expose;

pub struct Factory;

#[expose]
impl Factory {
    pub fn new(&self) -> u32 {
        0
    }

    pub fn peer(&self) -> String {
        String::new()
    }
}

fn main() {}
