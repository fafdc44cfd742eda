//! An option that does not exist, on a method.

use rpc_core::expose;

pub struct Calc;

#[expose]
impl Calc {
    #[expose(rename = "plus")]
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[expose(skip, hidden)]
    pub fn local(&self) {}
}

fn main() {}
