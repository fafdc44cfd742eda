//! `#[expose]` inside a `macro_rules!` expansion: the user's tokens carry
//! the macro's hygiene, and the generated code must still resolve.

use rpc_core::{expose, CallContext, Service};

macro_rules! service {
    ($ty:ident, $method:ident, $arg:ident) => {
        pub struct $ty;

        #[expose]
        impl $ty {
            pub fn $method(&self, $arg: u32, cx: CallContext) -> u32 {
                let _ = cx;
                $arg + 1
            }

            pub async fn later(&self, x: u32, cx: CallContext) -> u32 {
                let _ = cx;
                x
            }

            #[expose(close)]
            fn bye(&self) {}
        }
    };
}

service!(Made, bump, value);

fn main() {
    assert_eq!(<Made as Service>::methods(), ["bump", "later"]);
    let _ = MadeClient::<::rpc_core::Peer>::new;
}
