//! `CallContext` by reference, or twice.

use rpc_core::{expose, CallContext};

pub struct Jobs;

#[expose]
impl Jobs {
    pub fn by_ref(&self, cx: &CallContext) -> u64 {
        cx.connection_id()
    }

    pub fn twice(&self, a: CallContext, b: CallContext) -> u64 {
        a.connection_id() + b.connection_id()
    }
}

fn main() {}
