//! What is left alone: `#[expose(skip)]` methods (even ones that would be
//! rejected if exposed), private and `pub(crate)` methods, and associated
//! functions without a receiver. Their stubs do not exist, and they are not
//! in the method list.

use rpc_core::{expose, Service};

pub struct Counter {
    n: std::sync::atomic::AtomicU64,
}

#[expose]
impl Counter {
    pub fn new() -> Self {
        Counter { n: std::sync::atomic::AtomicU64::new(0) }
    }

    pub fn with_start(n: u64) -> Self {
        Counter { n: std::sync::atomic::AtomicU64::new(n) }
    }

    pub fn get(&self) -> u64 {
        self.helper()
    }

    fn helper(&self) -> u64 {
        self.n.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn crate_only(&self) -> u64 {
        0
    }

    #[expose(skip)]
    pub fn local_only(&self) {}

    #[expose(skip)]
    pub fn borrowed<'a>(&self, s: &'a str) -> &'a str {
        s
    }

    #[expose(skip)]
    pub fn generic<T: Default>(&self) -> T {
        T::default()
    }

    #[expose(skip)]
    pub fn set(&mut self, n: u64) {
        *self.n.get_mut() = n;
    }

    #[expose(skip)]
    pub fn into_inner(self) -> u64 {
        self.n.into_inner()
    }

    fn private_mut(&mut self) {}

    #[cfg(any())]
    fn configured_out(&self) {}
}

impl Default for Counter {
    fn default() -> Self {
        Self::new()
    }
}

fn main() {
    let mut c = Counter::with_start(1);
    c.set(2);
    c.private_mut();
    c.local_only();
    let _ = (c.crate_only(), c.borrowed("x"), c.generic::<u8>(), c.get());
    assert_eq!(c.into_inner(), 2);
    assert_eq!(<Counter as Service>::methods(), ["get"]);
    assert_eq!(CounterClient::METHODS, ["get"]);
}
