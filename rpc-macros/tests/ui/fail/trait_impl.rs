//! `#[expose]` on a trait impl.

use rpc_core::expose;

pub struct Calc;

#[expose]
impl Default for Calc {
    fn default() -> Self {
        Calc
    }
}

fn main() {
    // The impl is still there.
    let _ = Calc::default();
}
