//! A `Service` written by hand (no macro), over a real TCP socket: the
//! dispatch trait is usable on its own.

use std::sync::Arc;

use rpc_core::{Handled, Incoming, RemoteError, RpcError, Service};
use rpc_tests::serve;
use rpc_tests::within;

struct Greeter;

impl Service for Greeter {
    fn name() -> &'static str {
        "Greeter"
    }
    fn methods() -> &'static [&'static str] {
        &["hello", "later"]
    }
    fn dispatch(self: Arc<Self>, method: usize, call: Incoming) -> Handled {
        match method {
            0 => match call.args::<(String,)>() {
                Ok((who,)) => Handled::Done(call.reply(&format!("hello, {who}"))),
                Err(e) => Handled::Done(call.fail(e)),
            },
            1 => Handled::Pending(Box::pin(async move {
                tokio::task::yield_now().await;
                call.reply(&7u32)
            })),
            _ => Handled::Done(call.unknown_method()),
        }
    }
}

#[tokio::test]
async fn hand_written_service_over_tcp() {
    within(10, async {
        let server = serve(Greeter, "tcp://127.0.0.1:0").await;
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
        let s: String = peer.call("Greeter.hello", &("ada",)).await.unwrap();
        assert_eq!(s, "hello, ada");
        // A single argument may be passed bare: postcard encodes `x` and `(x,)` alike.
        let s: String = peer.call("Greeter.hello", "bob").await.unwrap();
        assert_eq!(s, "hello, bob");
        let n: u32 = peer.call("Greeter.later", &()).await.unwrap();
        assert_eq!(n, 7);
        let e = peer
            .call::<String, _>("Greeter.hello", &(1u8, 2u8, 3u8))
            .await
            .unwrap_err();
        assert!(
            matches!(e, RpcError::Remote(RemoteError::BadArguments(_))),
            "{e:?}"
        );
        let e = peer.call::<u32, _>("Greeter.nope", &()).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote(RemoteError::UnknownMethod {
                object: "Greeter".into(),
                method: "nope".into()
            })
        );
        let e = peer.call::<u32, _>("Nobody.hello", &()).await.unwrap_err();
        assert_eq!(
            e,
            RpcError::Remote(RemoteError::UnknownObject("Nobody".into()))
        );
    })
    .await;
}
