//! Argument and return types that cannot cross the wire. Each missing trait
//! is reported at the type itself (`handle: Handle`, `-> Handle`); the
//! generated code's own uses of the type are reported in the same signature
//! (the parameter list, the return type), all but the bounds of the client
//! stub's future, which rustc reports at the attribute.

use rpc_core::expose;

pub struct Handle(u32);

pub struct Registry;

#[expose]
impl Registry {
    pub fn open(&self, name: String, handle: Handle) -> bool {
        let _ = (name, handle.0);
        true
    }

    pub fn current(&self) -> Handle {
        Handle(0)
    }
}

fn main() {}
