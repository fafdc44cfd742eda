//! An exposed method with type parameters, or a `where` clause.

use rpc_core::expose;

pub struct Echo;

#[expose]
impl Echo {
    pub fn echo<T: Clone>(&self, value: u32) -> u32 {
        value
    }

    pub fn bounded(&self, value: u32) -> u32
    where
        u32: Copy,
    {
        value
    }

    // Not exposed: generics are fine on local methods.
    fn local<T: Clone>(&self, value: T) -> T {
        value
    }
}

fn main() {
    let _ = Echo.local(1u8);
}
