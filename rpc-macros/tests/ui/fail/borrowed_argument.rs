//! References in arguments cannot cross the wire.

use rpc_core::expose;

pub struct Greeter;

#[expose]
impl Greeter {
    pub fn greet(&self, name: &str) -> String {
        format!("hello {name}")
    }

    pub fn sum(&self, values: Vec<&u32>) -> u32 {
        values.into_iter().sum()
    }
}

fn main() {}
