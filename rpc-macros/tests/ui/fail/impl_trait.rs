//! `impl Trait` in an exposed signature.

use rpc_core::expose;

pub struct Numbers;

#[expose]
impl Numbers {
    pub fn sum(&self, values: impl IntoIterator<Item = u32>) -> u32 {
        values.into_iter().sum()
    }

    pub fn evens(&self) -> impl Iterator<Item = u32> {
        (0..10).filter(|n| n % 2 == 0)
    }
}

fn main() {}
