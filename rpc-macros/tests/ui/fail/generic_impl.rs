//! A generic impl block: the remote side calls one concrete type.

use rpc_core::expose;

pub struct Store<T>(Vec<T>);

#[expose]
impl<T: Clone> Store<T> {
    pub fn len(&self) -> u32 {
        self.0.len() as u32
    }
}

fn main() {}
