//! `#[cfg]` on the whole block applies to everything generated: a block
//! that is configured out generates nothing (its types need not even be
//! serializable), a block that is configured in works as usual.

use rpc_core::{expose, Service};

pub struct Off;
pub struct NotSerde;

#[expose]
#[cfg(any())]
impl Off {
    pub fn take(&self, x: NotSerde) -> NotSerde {
        x
    }
}

pub struct On;

#[expose]
#[cfg(all())]
impl On {
    pub fn get(&self) -> u8 {
        1
    }
}

// A second, configured-out `OffClient` would clash if the first existed.
pub struct OffClient;

fn main() {
    let _ = OffClient;
    let _ = NotSerde;
    assert_eq!(<On as Service>::methods(), ["get"]);
    let _ = OnClient::<::rpc_core::Peer>::new;
}
