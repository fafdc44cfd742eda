//! Handlers for calls nobody exposed, over TCP and Unix sockets: the
//! registry's fallback, an object's fallback for its unknown methods, a
//! fallback that calls back into its caller, and a gateway forwarding raw
//! calls to another server.

use rpc_core::{CallContext, Handled, Incoming, RemoteError, RpcError};
use rpc_tests::fixtures::{Calc, CalcClient, MathError};
use rpc_tests::{addresses, serve, within};
use rpc_transport::Server;

#[tokio::test]
async fn without_a_fallback_unknown_calls_fail_as_before() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let e = peer.call::<(), _>("Nobody.home", &()).await.unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("Nobody".into()))
            );
            let e = peer.call::<(), _>("Calc.mul", &()).await.unwrap_err();
            assert!(matches!(
                e,
                RpcError::Remote(RemoteError::UnknownMethod { .. })
            ));
            // Set and removed again: the same errors.
            server
                .registry()
                .fallback(|call: Incoming| Handled::Done(call.reply(&())));
            peer.call::<(), _>("Nobody.home", &()).await.unwrap();
            server.registry().remove_fallbacks();
            let e = peer.call::<(), _>("Nobody.home", &()).await.unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("Nobody".into()))
            );
        })
        .await;
    }
}

#[tokio::test]
async fn the_registry_fallback_gets_names_and_typed_arguments_and_can_call_back() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            server.registry().fallback(|call: Incoming| {
                Handled::Pending(Box::pin(async move {
                    let cx: CallContext = call.context();
                    match (call.object(), call.method()) {
                        ("Echo", "twice") => match call.args::<(String,)>() {
                            Ok((s,)) => call.reply(&format!("{s}{s}")),
                            Err(e) => call.fail(e),
                        },
                        // Calls back into the caller before answering.
                        ("Ask", "caller") => {
                            let sum: Result<i64, RpcError> =
                                CalcClient::new(cx.peer()).add(20, 22).await;
                            match sum {
                                Ok(n) => call.reply(&n),
                                Err(e) => call.fail(RemoteError::Failed(e.to_string())),
                            }
                        }
                        _ => call.unknown_method(),
                    }
                }))
            });
            let peer = rpc_transport::connect(server.local_addr())
                .expose(Calc::default())
                .await
                .unwrap();
            let s: String = peer.call("Echo.twice", &("ab",)).await.unwrap();
            assert_eq!(s, "abab");
            let e = peer.call::<String, _>("Echo.twice", &(300u32,)).await.unwrap_err();
            assert!(matches!(e, RpcError::Remote(RemoteError::BadArguments(_))), "{e:?}");
            assert_eq!(peer.call::<i64, _>("Ask.caller", &()).await.unwrap(), 42);
            let e = peer.call::<(), _>("Echo.thrice", &()).await.unwrap_err();
            assert!(matches!(e, RpcError::Remote(RemoteError::UnknownMethod { method, .. }) if method == "thrice"));
            // Exposed methods are not the fallback's business.
            assert_eq!(CalcClient::new(&peer).add(1, 2).await.unwrap(), 3);
        })
        .await;
    }
}

#[tokio::test]
async fn an_objects_fallback_takes_its_unknown_methods_before_the_registrys() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            server
                .registry()
                .fallback(|call: Incoming| Handled::Done(call.reply(&"registry")));
            server.registry().fallback_for("Calc", |call: Incoming| {
                let said = format!("Calc's own: {}", call.method());
                Handled::Done(call.reply(&said))
            });
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            assert_eq!(CalcClient::new(&peer).add(2, 2).await.unwrap(), 4);
            let s: String = peer.call("Calc.mul", &(2i64, 3i64)).await.unwrap();
            assert_eq!(s, "Calc's own: mul");
            let s: String = peer.call("Other.x", &()).await.unwrap();
            assert_eq!(s, "registry");
        })
        .await;
    }
}

/// A gateway with a fallback that forwards every call, raw, to a backend:
/// a typed stub used against the gateway gets the backend's answers,
/// typed errors included, and the backend's refusals.
#[tokio::test]
async fn a_gateway_forwards_calls_it_does_not_know() {
    for (addr, _dir) in addresses() {
        within(10, async {
            let backend = serve(Calc::default(), "tcp://127.0.0.1:0").await;
            let to_backend = rpc_transport::connect(backend.local_addr()).await.unwrap();
            let gateway = Server::builder().bind(addr.as_str()).await.unwrap();
            gateway.registry().fallback(move |call: Incoming| {
                let backend = to_backend.clone();
                Handled::Pending(Box::pin(async move {
                    let target = format!("{}.{}", call.object(), call.method());
                    match backend.call_raw(&target, call.raw_args(), None).await {
                        Ok(reply) => call.reply_raw(&reply),
                        Err(RpcError::Remote(e)) => call.fail(e),
                        Err(e) => call.fail(RemoteError::Failed(e.to_string())),
                    }
                }))
            });
            let peer = rpc_transport::connect(gateway.local_addr()).await.unwrap();
            let calc = CalcClient::new(&peer);
            assert_eq!(calc.add(40, 2).await.unwrap(), 42);
            assert_eq!(calc.div(1, 0).await.unwrap(), Err(MathError::DivideByZero));
            let e = peer.call::<(), _>("Calc.mul", &()).await.unwrap_err();
            assert!(
                matches!(e, RpcError::Remote(RemoteError::UnknownMethod { .. })),
                "{e:?}"
            );
            let (_, name) = calc.whoami().await.unwrap();
            assert_eq!(
                name, None,
                "the backend sees the gateway, which gave no name"
            );
        })
        .await;
    }
}

/// Introspection: each side lists what the other exposes to it; a server
/// can switch it off, whatever the order of its builder's calls.
#[tokio::test]
async fn each_side_lists_what_the_other_exposes_unless_switched_off() {
    use rpc_core::Registry;
    use rpc_tests::accepted;

    for (addr, _dir) in addresses() {
        within(10, async {
            let server = serve(Calc::default(), &addr).await;
            let mut events = server.events();
            let mine = Registry::new();
            mine.expose_as("Helper", Calc::default());
            let peer = rpc_transport::connect(server.local_addr())
                .registry(mine)
                .await
                .unwrap();
            let theirs = peer.remote_objects().await.unwrap();
            assert_eq!(theirs.len(), 1);
            assert_eq!(theirs[0].name, "Calc");
            assert!(theirs[0].methods.iter().any(|m| m == "add"));
            assert_eq!(
                theirs[0].methods.len(),
                rpc_tests::fixtures::CalcClient::METHODS.len()
            );
            // The server asks its client.
            let client = accepted(&mut events).await;
            let names: Vec<String> = client
                .remote_objects()
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.name)
                .collect();
            assert_eq!(names, ["Helper"]);

            let closed = Server::builder()
                .introspection(false)
                .registry(Registry::new())
                .expose(Calc::default())
                .bind(addr.replace(".sock", "-2.sock").as_str())
                .await
                .unwrap();
            let peer = rpc_transport::connect(closed.local_addr()).await.unwrap();
            let e = peer.remote_objects().await.unwrap_err();
            assert_eq!(
                e,
                RpcError::Remote(RemoteError::UnknownObject("rpc".into()))
            );
            assert_eq!(CalcClient::new(&peer).add(1, 1).await.unwrap(), 2);
        })
        .await;
    }
}

/// Registration events: each side hears what the other exposes and removes
/// during the connection (Foundry's "when the client registers Bank, call
/// it"), and the server's events carry the client's per connection.
#[tokio::test]
async fn each_side_hears_what_the_other_exposes_and_removes() {
    use rpc_core::{Registry, RemoteChange};
    use rpc_transport::Event;

    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder().bind(addr.as_str()).await.unwrap();
            let mut events = server.events();
            let mine = Registry::new();
            let peer = rpc_transport::connect(server.local_addr())
                .registry(mine.clone())
                .await
                .unwrap();
            let mut heard_by_client = peer.remote_changes();
            let Some(Event::Connected(client)) = events.recv().await else {
                panic!("expected the connection")
            };
            let id = client.connection_id();

            // The client registers "Bank": the server calls it.
            mine.expose_as("Bank", Calc::default());
            let change = loop {
                match events.recv().await {
                    Some(Event::RemoteChanged { id: from, change }) => break (from, change),
                    Some(_) => {}
                    None => panic!("events ended"),
                }
            };
            assert_eq!(change, (id, RemoteChange::Exposed("Bank".into())));
            assert_eq!(
                CalcClient::with_name(&client, "Bank")
                    .add(1, 2)
                    .await
                    .unwrap(),
                3
            );

            // The server gives this client an object of its own, then the
            // server's shared registry changes: the client hears both.
            client.expose_as("Session", Calc::default());
            server.registry().expose_as("Shared", Calc::default());
            server.registry().remove("Shared");
            let mut heard = Vec::new();
            while heard.len() < 3 {
                heard.push(heard_by_client.recv().await.unwrap());
            }
            assert_eq!(
                heard,
                [
                    RemoteChange::Exposed("Session".into()),
                    RemoteChange::Exposed("Shared".into()),
                    RemoteChange::Removed("Shared".into()),
                ]
            );

            // With introspection off, nothing is told.
            let quiet = Registry::new();
            quiet.introspection(false);
            let peer2 = rpc_transport::connect(server.local_addr())
                .registry(quiet.clone())
                .await
                .unwrap();
            let Some(Event::Connected(client2)) = events.recv().await else {
                panic!("expected the second connection")
            };
            let mut heard2 = client2.remote_changes();
            quiet.expose_as("Hidden", Calc::default());
            mine.expose_as("Told", Calc::default());
            // The first client's change arrives; the quiet one's never does.
            loop {
                match events.recv().await {
                    Some(Event::RemoteChanged { change, .. }) => {
                        assert_eq!(change, RemoteChange::Exposed("Told".into()));
                        break;
                    }
                    Some(_) => {}
                    None => panic!("events ended"),
                }
            }
            // A call after the change, on the same connection, is served after
            // anything the change would have sent: by its answer, the server
            // would have heard.
            peer2.remote_objects().await.unwrap();
            assert!(heard2.try_recv().is_err());
        })
        .await;
    }
}
