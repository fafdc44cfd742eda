//! Several mistakes in one block are all reported in one build.

use rpc_core::expose;

pub struct Service;

#[expose(nmae = "svc")]
impl Service {
    pub fn bump(&mut self) {}

    pub fn greet(&self, name: &str) -> String {
        name.to_owned()
    }

    #[expose(name = "greet")]
    pub fn hello(&self) -> String {
        String::new()
    }

    pub fn pick<T>(&self, (a, _b): (u32, u32)) -> u32 {
        a
    }

    #[expose(unknown)]
    pub fn fine(&self) -> u32 {
        1
    }
}

fn main() {}
