//! `#[expose]` on a struct, a function and a trait: it goes on the impl block.

use rpc_core::expose;

#[expose]
pub struct Calc {
    pub total: i64,
}

#[expose]
pub fn add(a: i64, b: i64) -> i64 {
    a + b
}

#[expose]
pub trait Api {
    fn ping(&self);
}

fn main() {
    // The items are still emitted, so these produce no further errors.
    let calc = Calc { total: add(1, 2) };
    let _ = calc.total;
    let _ = <dyn Api>::ping;
}
