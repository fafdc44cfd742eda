//! A block with nothing exposed still makes a (useless but valid) service
//! and stub.

use rpc_core::{expose, Service};

pub struct Nothing;

#[expose]
impl Nothing {}

pub struct OnlyLocal;

#[expose(name = "local")]
impl OnlyLocal {
    pub fn new() -> Self {
        OnlyLocal
    }

    fn helper(&self) {}

    const LIMIT: u32 = 3;
}

fn main() {
    assert!(<Nothing as Service>::methods().is_empty());
    assert!(NothingClient::METHODS.is_empty());
    assert_eq!(OnlyLocalClient::NAME, "local");
    OnlyLocal::new().helper();
    let _ = OnlyLocal::LIMIT;
}
