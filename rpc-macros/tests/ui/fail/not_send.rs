//! An object that is not `Send + Sync` cannot be exposed the normal way;
//! `#[expose(local)]` is the way for it.

use std::rc::Rc;

use rpc_core::expose;

pub struct Model {
    items: Rc<Vec<String>>,
}

#[expose]
impl Model {
    pub fn len(&self) -> usize {
        self.items.len()
    }
}

fn main() {}
