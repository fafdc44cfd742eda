//! An impl block for one instantiation of a generic type.

use rpc_core::expose;

pub struct Store<T>(Vec<T>);

#[expose]
impl Store<u32> {
    pub fn len(&self) -> u32 {
        self.0.len() as u32
    }
}

fn main() {}
