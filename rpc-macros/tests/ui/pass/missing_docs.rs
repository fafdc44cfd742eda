//! Everything generated is documented: the stub passes
//! `#![deny(missing_docs)]`, whether the user's methods have docs or not.

#![deny(missing_docs)]

use rpc_core::expose;

/// A documented calculator.
pub struct Calculator;

#[expose]
impl Calculator {
    /// Adds two numbers.
    ///
    /// Several lines of docs are copied as they are.
    pub fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }

    #[allow(missing_docs)]
    pub async fn undocumented(&self) {}
}

/// A module, to check a stub that is reachable by path.
pub mod inner {
    /// Named objects.
    pub struct Named;

    #[rpc_core::expose(name = "named")]
    impl Named {
        #[expose(name = "hello")]
        #[allow(missing_docs)]
        pub fn greet(&self, who: String) -> String {
            format!("hello, {who}")
        }
    }
}

fn main() {
    let _ = CalculatorClient::<::rpc_core::Peer>::new;
    let _ = inner::NamedClient::<::rpc_core::Peer>::new;
}
