//! A `local` object runs on its own thread: `blocking` means nothing there.

use rpc_core::expose;

pub struct Panel;

#[expose(local, blocking)]
impl Panel {
    pub fn draw(&self) {}
}

pub struct Dialog;

#[expose(local)]
impl Dialog {
    #[expose(blocking)]
    pub fn show(&self) {}
}

fn main() {}
