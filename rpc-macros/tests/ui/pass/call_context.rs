//! A `CallContext` parameter anywhere in the list (first, middle, last), in
//! sync and async methods, by its short or full path: it is not part of the
//! stub's signature.

use rpc_core::{expose, CallContext, RpcError};

pub struct Jobs;

#[expose]
impl Jobs {
    pub fn only(&self, cx: CallContext) -> u64 {
        cx.connection_id()
    }

    pub fn first(&self, cx: CallContext, a: u32, b: u32) -> String {
        format!("{} {a} {b}", cx.method())
    }

    pub fn middle(&self, a: u32, _cx: rpc_core::CallContext, b: u32) -> u32 {
        a + b
    }

    pub fn last(&self, a: u32, b: u32, cx: ::rpc_core::CallContext) -> Option<u64> {
        cx.request_id().map(|id| id + u64::from(a + b))
    }

    pub async fn async_first(&self, cx: CallContext, steps: u32) -> Result<u32, RpcError> {
        for i in 0..steps {
            cx.peer().notify("Progress.step", &(i,)).await?;
        }
        Ok(steps)
    }

    pub async fn async_middle(&self, a: String, cx: CallContext, b: String) -> String {
        format!("{a}{}{b}", cx.object())
    }

    pub async fn async_last(&self, n: u8, mut cx: CallContext) -> u8 {
        cx = cx.clone();
        let _ = cx.remaining();
        n
    }
}

async fn client_calls(c: &JobsClient) -> Result<(), RpcError> {
    let _: u64 = c.only().await?;
    let _: String = c.first(1, 2).await?;
    let _: u32 = c.middle(1, 2).await?;
    let _: Option<u64> = c.last(1, 2).await?;
    let _: Result<u32, RpcError> = c.async_first(3).await?;
    let _: String = c.async_middle("a".into(), "b".into()).await?;
    let _: u8 = c.async_last(1).await?;
    Ok(())
}

fn main() {
    let _ = client_calls;
}
