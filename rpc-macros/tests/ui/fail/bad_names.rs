//! Names that cannot be addressed: empty, or containing `.`.

use rpc_core::expose;

pub struct Calc;

#[expose(name = "")]
impl Calc {
    #[expose(name = "")]
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[expose(name = "math.sub")]
    pub fn sub(&self, a: i64, b: i64) -> i64 {
        a - b
    }

    #[expose(skip, name = "mul")]
    pub fn mul(&self, a: i64, b: i64) -> i64 {
        a * b
    }
}

fn main() {}
