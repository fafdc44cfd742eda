//! Two methods exposed under the same wire name.

use rpc_core::expose;

pub struct Calc;

#[expose]
impl Calc {
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[expose(name = "add")]
    pub fn add_all(&self, values: Vec<i64>) -> i64 {
        values.into_iter().sum()
    }
}

fn main() {}
