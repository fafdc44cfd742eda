//! A borrowed return value, and a lifetime parameter in a type.

use std::borrow::Cow;

use rpc_core::expose;

pub struct Greeter {
    name: String,
}

#[expose]
impl Greeter {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn label(&self) -> Cow<'static, str> {
        Cow::Borrowed("greeter")
    }

    pub fn with_lifetime<'a>(&'a self) -> u32 {
        0
    }
}

fn main() {}
