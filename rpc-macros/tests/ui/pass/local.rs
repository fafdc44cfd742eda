//! `#[expose(local)]` accepts an object that is neither `Send` nor `Sync`,
//! including `async` methods whose futures hold an `Rc` across an `.await`,
//! a close hook and a stream; the result is served through `Local`.

use std::cell::RefCell;
use std::rc::Rc;

use rpc_core::{expose, CallContext, Local, LocalService, Registry, RpcError};

pub struct Model {
    items: Rc<RefCell<Vec<String>>>,
}

#[expose(local, name = "model")]
impl Model {
    pub fn push(&self, item: String) -> usize {
        self.items.borrow_mut().push(item);
        self.items.borrow().len()
    }

    pub async fn later(&self, cx: CallContext) -> Result<usize, RpcError> {
        let items = Rc::clone(&self.items);
        let _: () = cx.peer().call("Other.poke", &()).await?;
        let len = items.borrow().len();
        Ok(len)
    }

    pub fn each(&self) -> impl futures::Stream<Item = String> + Send + 'static {
        futures::stream::iter(self.items.borrow().clone())
    }

    #[expose(close)]
    pub async fn save(&self) {
        let items = Rc::clone(&self.items);
        tokio::task::yield_now().await;
        drop(items);
    }
}

fn main() {
    assert_eq!(<Model as LocalService>::name(), "model");
    assert_eq!(<Model as LocalService>::methods(), &["push", "later", "each"]);
    let registry = Registry::new();
    registry.expose(Local::spawn(|| Model { items: Rc::default() }).unwrap());
    let _: fn(&rpc_core::Peer) -> ModelClient = |peer| ModelClient::new(peer);
}
