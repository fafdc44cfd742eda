//! When the block is rejected, the block itself is still emitted: code that
//! calls its methods compiles, so the only error is the macro's.

use rpc_core::expose;

pub struct Counter {
    n: u64,
}

#[expose]
impl Counter {
    pub fn new() -> Self {
        Counter { n: 0 }
    }

    pub fn get(&self) -> u64 {
        self.n
    }

    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    #[expose(skip)]
    pub fn reset(&mut self) {
        self.n = 0;
    }
}

fn main() {
    let mut c = Counter::new();
    c.bump();
    c.reset();
    let _: u64 = c.get();
}
