//! The same option twice, in one attribute or across two.

use rpc_core::expose;

pub struct Calc;

#[expose(name = "calc", name = "calculator")]
impl Calc {
    #[expose(name = "plus", name = "sum")]
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[expose(skip)]
    #[expose(skip)]
    pub fn local(&self) {}
}

fn main() {}
