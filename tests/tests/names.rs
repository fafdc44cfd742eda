//! The name service over real sockets: registering, looking up, listing and
//! watching; names that live exactly as long as their connection; conflicts
//! and limits; the shared secret; `name://` addresses dialed through the
//! service (TCP and Unix), looked up again on reconnection; and the
//! `echo_server` program registering itself.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use rpc_core::{expose, RpcError, RpcStream, Status};
use rpc_examples::echo::EchoClient;
use rpc_tests::{addresses, init_tracing, within};
use rpc_transport::names::{
    Change, NameError, NameLimits, NameService, NameServiceClient, Names, Removal, ENV,
};
use rpc_transport::{connect, Address, Backoff, Server};

/// Says which server answered.
pub struct Which(u32);

#[expose]
impl Which {
    /// The server's number.
    pub fn which(&self) -> u32 {
        self.0
    }
}

async fn name_service(addr: &str) -> Server {
    Server::builder()
        .expose(NameService::new())
        .bind(addr)
        .await
        .unwrap()
}

async fn client_of(server: &Server) -> NameServiceClient {
    NameServiceClient::new(&connect(server.local_addr()).await.unwrap())
}

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn next(changes: &mut RpcStream<Change>) -> Change {
    changes.next().await.expect("the watch ended").unwrap()
}

fn removed(name: &str, why: Removal) -> Change {
    Change::Removed {
        name: name.into(),
        why,
    }
}

#[tokio::test]
async fn register_lookup_and_list_over_tcp_and_unix() {
    init_tracing();
    within(20, async {
        for (addr, _dir) in addresses() {
            let ns = name_service(&addr).await;
            let client = client_of(&ns).await;
            let v2 = meta(&[("version", "2")]);
            for name in ["svc.b", "svc.a", "other"] {
                client
                    .register(name.into(), "tcp://10.0.0.1:7000".into(), v2.clone())
                    .await
                    .unwrap()
                    .unwrap();
            }
            // Another connection sees them.
            let reader = client_of(&ns).await;
            let entry = reader.lookup("svc.a".into()).await.unwrap().unwrap();
            assert_eq!(entry.name, "svc.a");
            assert_eq!(entry.address, "tcp://10.0.0.1:7000");
            assert_eq!(entry.metadata, v2);
            assert_eq!(reader.lookup("svc.c".into()).await.unwrap(), None);
            let listed: Vec<String> = reader
                .list("svc.".into())
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.name)
                .collect();
            assert_eq!(listed, ["svc.a", "svc.b"], "over {addr}");
            assert_eq!(reader.list(String::new()).await.unwrap().len(), 3);
            // The convenience verbs say the same.
            let names = Names::at(ns.local_addr());
            assert_eq!(
                names.resolve("other").await.unwrap(),
                Address::Tcp("10.0.0.1:7000".into())
            );
            assert_eq!(names.list("svc.").await.unwrap().len(), 2);
        }
    })
    .await;
}

#[tokio::test]
async fn watch_sees_what_is_there_then_each_add_and_remove() {
    init_tracing();
    within(20, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let owner = client_of(&ns).await;
        owner
            .register("svc.old".into(), "tcp://10.0.0.1:1".into(), meta(&[]))
            .await
            .unwrap()
            .unwrap();
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch("svc.".into()).await.unwrap();
        // What was registered before the watch began comes first.
        let Change::Registered(first) = next(&mut changes).await else {
            panic!("expected the existing entry first")
        };
        assert_eq!(first.name, "svc.old");

        owner
            .register("other".into(), "tcp://10.0.0.1:2".into(), meta(&[]))
            .await
            .unwrap()
            .unwrap();
        owner
            .register(
                "svc.new".into(),
                "tcp://10.0.0.1:3".into(),
                meta(&[("k", "v")]),
            )
            .await
            .unwrap()
            .unwrap();
        // `other` is not under the prefix: the next change is `svc.new`.
        let Change::Registered(added) = next(&mut changes).await else {
            panic!("expected svc.new")
        };
        assert_eq!(
            (added.name.as_str(), added.metadata["k"].as_str()),
            ("svc.new", "v")
        );
        assert_eq!(owner.unregister("svc.new".into()).await.unwrap(), Ok(true));
        assert_eq!(
            next(&mut changes).await,
            removed("svc.new", Removal::Unregistered)
        );
    })
    .await;
}

#[tokio::test]
async fn names_go_with_the_connection_that_registered_them() {
    init_tracing();
    within(20, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch(String::new()).await.unwrap();

        let owner = connect(ns.local_addr()).await.unwrap();
        let client = NameServiceClient::new(&owner);
        for name in ["a", "b"] {
            client
                .register(name.into(), "tcp://10.0.0.1:1".into(), meta(&[]))
                .await
                .unwrap()
                .unwrap();
            assert!(matches!(next(&mut changes).await, Change::Registered(e) if e.name == name));
        }
        owner.close().await;
        let mut gone = vec![next(&mut changes).await, next(&mut changes).await];
        gone.sort_by(|x, y| x.name().cmp(&y.name()));
        assert_eq!(
            gone,
            [
                removed("a", Removal::Disconnected),
                removed("b", Removal::Disconnected)
            ]
        );
        assert_eq!(watcher.lookup("a".into()).await.unwrap(), None);
        assert!(watcher.list(String::new()).await.unwrap().is_empty());
    })
    .await;
}

#[tokio::test]
async fn a_live_name_is_refused_to_other_connections() {
    init_tracing();
    within(20, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch("echo".into()).await.unwrap();
        let first = connect(ns.local_addr()).await.unwrap();
        let a = NameServiceClient::new(&first);
        let b = client_of(&ns).await;

        a.register("echo".into(), "tcp://10.0.0.1:1".into(), meta(&[]))
            .await
            .unwrap()
            .unwrap();
        let taken = b
            .register("echo".into(), "tcp://10.0.0.2:1".into(), meta(&[]))
            .await
            .unwrap();
        assert_eq!(taken, Err(NameError::Taken("echo".into())));
        assert_eq!(
            b.unregister("echo".into()).await.unwrap(),
            Err(NameError::NotOwner("echo".into()))
        );
        // The owner may move it.
        a.register("echo".into(), "unix:///run/echo.sock".into(), meta(&[]))
            .await
            .unwrap()
            .unwrap();
        let entry = b.lookup("echo".into()).await.unwrap().unwrap();
        assert_eq!(entry.address, "unix:///run/echo.sock");
        // Once the owner's connection is gone, the name is free.
        next(&mut changes).await; // registered
        next(&mut changes).await; // moved
        first.close().await;
        assert_eq!(
            next(&mut changes).await,
            removed("echo", Removal::Disconnected)
        );
        b.register("echo".into(), "tcp://10.0.0.2:1".into(), meta(&[]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            b.lookup("echo".into()).await.unwrap().unwrap().address,
            "tcp://10.0.0.2:1"
        );
    })
    .await;
}

#[tokio::test]
async fn limits_bound_what_peers_can_make_the_service_hold() {
    init_tracing();
    within(20, async {
        let mut limits = NameLimits::default();
        limits.max_names_per_connection = 3;
        limits.max_names = 5;
        limits.max_name_len = 16;
        limits.max_metadata_bytes = 64;
        let ns = Server::builder()
            .expose(NameService::with_limits(limits))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch(String::new()).await.unwrap();
        let first = connect(ns.local_addr()).await.unwrap();
        let a = NameServiceClient::new(&first);
        let register = |c: &NameServiceClient, name: &str| {
            let (c, name) = (c.clone(), name.to_string());
            async move {
                c.register(name, "tcp://10.0.0.1:1".into(), BTreeMap::new())
                    .await
                    .unwrap()
            }
        };
        for name in ["a1", "a2", "a3"] {
            register(&a, name).await.unwrap();
        }
        assert_eq!(
            register(&a, "a4").await,
            Err(NameError::TooManyNames { limit: 3 })
        );
        let b = client_of(&ns).await;
        register(&b, "b1").await.unwrap();
        register(&b, "b2").await.unwrap();
        let c = client_of(&ns).await;
        assert_eq!(register(&c, "c1").await, Err(NameError::Full { limit: 5 }));

        // Sizes and syntax, each refused with its reason.
        let long = register(&c, &"n".repeat(17)).await.unwrap_err();
        assert!(matches!(&long, NameError::InvalidName(m) if m.contains("at most 16 bytes")));
        let spaced = register(&c, "a b").await.unwrap_err();
        assert!(matches!(spaced, NameError::InvalidName(_)));
        let big = c
            .register(
                "c1".into(),
                "tcp://10.0.0.1:1".into(),
                meta(&[("blob", &"x".repeat(100))]),
            )
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(big, NameError::InvalidMetadata(_)));
        let indirect = c
            .register("c1".into(), "name://a1".into(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(indirect, NameError::InvalidAddress(_)));
        assert_eq!(watcher.list(String::new()).await.unwrap().len(), 5);

        // The first connection's names go with it, and make room.
        for _ in 0..5 {
            next(&mut changes).await;
        }
        first.close().await;
        for _ in 0..3 {
            assert!(matches!(
                next(&mut changes).await,
                Change::Removed {
                    why: Removal::Disconnected,
                    ..
                }
            ));
        }
        register(&c, "c1").await.unwrap();
        assert_eq!(watcher.list(String::new()).await.unwrap().len(), 3);
    })
    .await;
}

#[tokio::test]
async fn a_name_service_with_a_secret_refuses_the_wrong_one() {
    init_tracing();
    within(20, async {
        let ns = Server::builder()
            .expose(NameService::new())
            .secret("names-secret")
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let wrong = Names::at(ns.local_addr()).secret("guess");
        assert!(matches!(
            wrong.lookup("echo").await,
            Err(RpcError::AuthFailed(_))
        ));
        let anonymous = Names::at(ns.local_addr());
        assert!(matches!(
            anonymous
                .register("echo", "tcp://10.0.0.1:1", BTreeMap::new())
                .await,
            Err(RpcError::AuthFailed(_))
        ));
        let dial = connect("name://echo").names(wrong).await.unwrap_err();
        assert!(matches!(dial, RpcError::AuthFailed(_)), "{dial:?}");

        let right = Names::at(ns.local_addr()).secret("names-secret");
        let _registration = right
            .register("echo", "tcp://10.0.0.1:1", BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            right.resolve("echo").await.unwrap(),
            Address::Tcp("10.0.0.1:1".into())
        );
    })
    .await;
}

#[tokio::test]
async fn name_addresses_dial_a_server_registered_over_tcp() {
    init_tracing();
    within(20, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let server = Server::builder()
            .expose(Which(7))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let names = Names::at(ns.local_addr());
        let _registration = names
            .register("which", server.local_addr(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        let peer = connect("name://which")
            .names(ns.local_addr())
            .await
            .unwrap();
        assert_eq!(WhichClient::new(&peer).which().await.unwrap(), 7);
        // Through a connection already open to the name service, too.
        let ns_peer = connect(ns.local_addr()).await.unwrap();
        let peer = connect(Address::Name("which".into()))
            .names(&ns_peer)
            .await
            .unwrap();
        assert_eq!(WhichClient::new(&peer).which().await.unwrap(), 7);
        assert!(rpc_transport::server_available(server.local_addr(), Duration::from_secs(5)).await);
    })
    .await;
}

#[tokio::test]
async fn name_addresses_dial_a_server_registered_on_a_unix_socket() {
    init_tracing();
    within(20, async {
        let dir = tempfile::tempdir().unwrap();
        let ns_addr = format!("unix://{}", dir.path().join("names.sock").display());
        let app_addr = format!("unix://{}", dir.path().join("app.sock").display());
        let ns = name_service(&ns_addr).await;
        let server = Server::builder()
            .expose(Which(3))
            .bind(&app_addr)
            .await
            .unwrap();
        let _registration = Names::at(&ns_addr)
            .register("app", server.local_addr(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            Names::at(ns.local_addr()).resolve("app").await.unwrap(),
            Address::Unix(dir.path().join("app.sock"))
        );
        let peer = connect("name://app").names(&ns_addr).await.unwrap();
        assert_eq!(WhichClient::new(&peer).which().await.unwrap(), 3);
    })
    .await;
}

#[tokio::test]
async fn unknown_names_and_bound_names_are_clear_errors() {
    init_tracing();
    within(20, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let unknown = connect("name://nobody")
            .names(ns.local_addr())
            .await
            .unwrap_err();
        let RpcError::BadAddress(message) = unknown else {
            panic!("expected BadAddress, got {unknown:?}")
        };
        assert!(message.contains("no server is registered as `nobody`"));
        assert!(message.contains(&ns.local_addr().to_string()));

        let bound = Server::builder().bind("name://echo").await.unwrap_err();
        assert!(
            matches!(&bound, RpcError::BadAddress(m) if m.contains("cannot bind `name://echo`"))
        );

        // Parsing: the names a name service accepts, and nothing else.
        let parsed: Address = "name://svc.echo-2_a".parse().unwrap();
        assert_eq!(parsed.to_string(), "name://svc.echo-2_a");
        assert_eq!(parsed.to_string().parse::<Address>().unwrap(), parsed);
        for bad in ["name://", "name://a b", "name://a/b"] {
            assert!(
                matches!(bad.parse::<Address>(), Err(RpcError::BadAddress(_))),
                "{bad}"
            );
        }
        // A name service must be given by its socket address.
        let nested = Names::at("name://names").lookup("echo").await.unwrap_err();
        assert!(matches!(nested, RpcError::BadAddress(_)));
    })
    .await;
}

/// The only test here that touches `RPC_NAMES`, so no other test sees it
/// change.
#[tokio::test]
async fn rpc_names_in_the_environment_is_the_fallback() {
    init_tracing();
    within(20, async {
        std::env::remove_var(ENV);
        let none = connect("name://which").await.unwrap_err();
        assert!(matches!(&none, RpcError::BadAddress(m) if m.contains("needs a name service") && m.contains(ENV)));

        // A protected name service found in the environment is reached with
        // the connection's own secret.
        let ns = Server::builder()
            .expose(NameService::new())
            .secret("shared")
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let server = Server::builder()
            .expose(Which(9))
            .secret("shared")
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let _registration = Names::at(ns.local_addr())
            .secret("shared")
            .register("which", server.local_addr(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        std::env::set_var(ENV, ns.local_addr().to_string());
        let peer = connect("name://which").secret("shared").await;
        std::env::remove_var(ENV);
        assert_eq!(WhichClient::new(&peer.unwrap()).which().await.unwrap(), 9);
    })
    .await;
}

#[tokio::test]
async fn a_reconnecting_client_looks_the_name_up_again() {
    init_tracing();
    within(30, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let names = Names::at(ns.local_addr());
        let first = Server::builder()
            .expose(Which(1))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let registration = names
            .register("which", first.local_addr(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        let backoff = Backoff::default()
            .initial(Duration::from_millis(20))
            .max(Duration::from_millis(200));
        let peer = connect("name://which")
            .names(names.clone())
            .reconnect(backoff)
            .await
            .unwrap();
        let which = WhichClient::new(&peer);
        assert_eq!(which.which().await.unwrap(), 1);

        // The server moves: a new process on another port registers the
        // same name once the old one is gone.
        let mut status = peer.status();
        // A stream does not keep its connection open: the client does.
        let watcher = NameServiceClient::new(&names.connect().await.unwrap());
        let mut changes = watcher.watch("which".into()).await.unwrap();
        next(&mut changes).await; // the current entry
        drop(registration);
        drop(first);
        assert_eq!(
            next(&mut changes).await,
            removed("which", Removal::Disconnected)
        );
        status
            .wait_for(|s| *s == Status::Reconnecting)
            .await
            .unwrap();
        let second = Server::builder()
            .expose(Which(2))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let _registration = names
            .register("which", second.local_addr(), BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        status.wait_for(|s| *s == Status::Connected).await.unwrap();
        assert_eq!(which.which().await.unwrap(), 2);
    })
    .await;
}

#[tokio::test]
async fn a_registration_comes_back_when_the_name_service_restarts() {
    init_tracing();
    within(30, async {
        let dir = tempfile::tempdir().unwrap();
        let ns_addr = format!("unix://{}", dir.path().join("names.sock").display());
        let ns = name_service(&ns_addr).await;
        let registration = Names::at(&ns_addr)
            .register("echo", "tcp://10.0.0.1:1", BTreeMap::new())
            .await
            .unwrap()
            .unwrap();
        let mut status = registration.peer().status();
        drop(ns);
        status
            .wait_for(|s| *s == Status::Reconnecting)
            .await
            .unwrap();

        // A new name service at the same address: empty, until the
        // registration reconnects and registers again.
        let ns = name_service(&ns_addr).await;
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch("echo".into()).await.unwrap();
        let Change::Registered(entry) = next(&mut changes).await else {
            panic!("expected the registration to come back")
        };
        assert_eq!(entry.address, "tcp://10.0.0.1:1");
        assert_eq!(registration.name(), "echo");
    })
    .await;
}

/// The `echo_server` program, stopped when dropped.
struct EchoServer(Child);

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn the_echo_server_program_registers_itself() {
    init_tracing();
    within(60, async {
        let ns = name_service("tcp://127.0.0.1:0").await;
        let watcher = client_of(&ns).await;
        let mut changes = watcher.watch("echo".into()).await.unwrap();

        let mut child = Command::new(env!("CARGO_BIN_EXE_echo_server_example"))
            .args(["--port", "0", "--register", "echo", "--names"])
            .arg(ns.local_addr().to_string())
            .env_remove("RPC_SECRET")
            .stdout(Stdio::piped())
            .spawn()
            .expect("start echo_server");
        let stdout = child.stdout.take().unwrap();
        let mut process = EchoServer(child);
        // Its first lines: where it listens, then that it registered.
        let said = tokio::task::spawn_blocking(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            let mut said = Vec::new();
            for line in lines.by_ref() {
                let line = line.unwrap();
                let done = line.starts_with("registered as");
                said.push(line);
                if done {
                    break;
                }
            }
            // Keep reading, so the program never blocks on a full pipe.
            std::thread::spawn(move || lines.for_each(drop));
            said
        })
        .await
        .unwrap();
        let listening = said
            .iter()
            .find_map(|l| l.strip_prefix("echo server listening on "))
            .expect("the listening line")
            .to_string();
        assert!(
            said.last()
                .unwrap()
                .starts_with("registered as name://echo"),
            "{said:?}"
        );

        let Change::Registered(entry) = next(&mut changes).await else {
            panic!("expected the echo server's registration")
        };
        assert_eq!(entry.address, listening);
        assert_eq!(entry.metadata["kind"], "echo");

        let peer = connect("name://echo").names(ns.local_addr()).await.unwrap();
        let reply = EchoClient::new(&peer).echo("by name".into()).await.unwrap();
        assert_eq!(reply, "by name");

        // The process dies: its name goes with its connection.
        process.0.kill().unwrap();
        process.0.wait().unwrap();
        assert_eq!(
            next(&mut changes).await,
            removed("echo", Removal::Disconnected)
        );
        let gone = connect("name://echo").names(ns.local_addr()).await;
        assert!(matches!(gone, Err(RpcError::BadAddress(_))));
    })
    .await;
}
