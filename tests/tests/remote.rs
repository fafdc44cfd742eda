//! Object references (`Remote<T>`) over real sockets: calls through a
//! handle, callbacks kept after the call, factories, release on drop and on
//! disconnect, dead and forged handles, limits, and handles sent on.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rpc_core::{expose, CallContext, Remote, RemoteError, RpcError};
use rpc_tests::{addresses, within};
use rpc_transport::Server;

/// Counts live objects of one kind: made in `new`, gone in `drop`.
#[derive(Clone, Default)]
struct Live(Arc<AtomicUsize>);

impl Live {
    fn count(&self) -> usize {
        self.0.load(SeqCst)
    }

    /// Waits (a few seconds at most) until `n` objects are live.
    async fn settles_at(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.count() != n {
            assert!(
                Instant::now() < deadline,
                "{} objects live, expected {n}",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A drop guard: counted live while it exists.
struct Guard(Live);

impl Guard {
    fn new(live: &Live) -> Guard {
        live.0.fetch_add(1, SeqCst);
        Guard(live.clone())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, SeqCst);
    }
}

/// The caller's listener: records what it hears.
pub struct Listener {
    heard: Arc<Mutex<Vec<String>>>,
    _guard: Guard,
}

#[expose]
impl Listener {
    /// One event.
    pub fn event(&self, what: String) {
        self.heard.lock().unwrap().push(what);
    }

    /// Who is listening.
    pub fn who(&self) -> String {
        "listener".into()
    }
}

/// A server-side session with state of its own.
pub struct Session {
    user: String,
    calls: AtomicUsize,
    _guard: Guard,
}

#[expose]
impl Session {
    /// The session's user.
    pub fn user(&self) -> String {
        self.calls.fetch_add(1, SeqCst);
        self.user.clone()
    }

    /// Calls made through this session.
    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }
}

/// The server's object: a factory of sessions and a feed of events.
pub struct Hub {
    sessions: Live,
    listeners: Mutex<Vec<Remote<Listener>>>,
}

#[expose]
impl Hub {
    /// A new session for `user`.
    pub fn login(&self, user: String) -> Remote<Session> {
        Remote::new(Session {
            user,
            calls: AtomicUsize::new(0),
            _guard: Guard::new(&self.sessions),
        })
    }

    /// `n` sessions at once.
    pub fn many(&self, n: u32) -> Vec<Remote<Session>> {
        (0..n).map(|i| self.login(format!("u{i}"))).collect()
    }

    /// Keeps `listener` for later.
    pub fn subscribe(&self, listener: Remote<Listener>) -> usize {
        let mut listeners = self.listeners.lock().unwrap();
        listeners.push(listener);
        listeners.len()
    }

    /// Drops every listener kept.
    pub fn unsubscribe_all(&self) {
        self.listeners.lock().unwrap().clear();
    }

    /// Tells every listener `what`; how many heard it.
    pub async fn publish(&self, what: String) -> usize {
        let listeners = self.listeners.lock().unwrap().clone();
        let mut heard = 0;
        for listener in listeners {
            if listener.event(what.clone()).await.is_ok() {
                heard += 1;
            }
        }
        heard
    }

    /// Sends the caller's own listener back to it.
    pub fn echo(&self, listener: Remote<Listener>) -> Remote<Listener> {
        listener
    }

    /// Calls the listener it is given, in the call.
    pub async fn ask(&self, listener: Remote<Listener>) -> Result<String, RpcError> {
        listener.who().await
    }

    /// The first listener kept, handed on to whoever asks.
    pub fn first_listener(&self) -> Option<Remote<Listener>> {
        self.listeners.lock().unwrap().first().cloned()
    }

    /// The name of the session handle the caller holds, as this side sees
    /// the call's connection (for the forging tests).
    pub fn whoami(&self, cx: CallContext) -> u64 {
        cx.connection_id()
    }
}

fn new_hub(sessions: &Live) -> Hub {
    Hub {
        sessions: sessions.clone(),
        listeners: Mutex::new(Vec::new()),
    }
}

/// A server at `addr` with a `Hub`, and the count of its live sessions.
async fn serve(addr: &str) -> (Server, Live) {
    let sessions = Live::default();
    let server = Server::builder()
        .expose(new_hub(&sessions))
        .bind(addr)
        .await
        .unwrap();
    (server, sessions)
}

fn listener(live: &Live) -> (Listener, Arc<Mutex<Vec<String>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = Listener {
        heard: heard.clone(),
        _guard: Guard::new(live),
    };
    (listener, heard)
}

#[tokio::test(flavor = "current_thread")]
async fn a_factory_returns_sessions_with_state_of_their_own() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, sessions) = serve(&addr).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let hub = HubClient::new(&peer);
            let ada = hub.login("ada".into()).await.unwrap();
            let bob = hub.login("bob".into()).await.unwrap();
            assert_eq!(ada.user().await.unwrap(), "ada");
            assert_eq!(ada.user().await.unwrap(), "ada");
            assert_eq!(bob.user().await.unwrap(), "bob");
            assert_eq!(
                (ada.calls().await.unwrap(), bob.calls().await.unwrap()),
                (2, 1)
            );
            assert_ne!(ada.name(), bob.name());
            assert_eq!(sessions.count(), 2);
            assert_eq!(peer.handle_counts().imported, 2);

            // Release on drop: the owner's object goes, seen by its guard.
            drop(ada);
            sessions.settles_at(1).await;
            assert_eq!(bob.user().await.unwrap(), "bob");
            // A clone keeps the handle; the last one releases it.
            let bob2 = bob.clone();
            drop(bob);
            assert_eq!(bob2.user().await.unwrap(), "bob");
            drop(bob2);
            sessions.settles_at(0).await;
            assert_eq!(peer.handle_counts().imported, 0);
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_callback_handle_is_kept_and_called_after_the_call() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, _sessions) = serve(&addr).await;
            let listeners = Live::default();
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let hub = HubClient::new(&peer);
            let (mine, heard) = listener(&listeners);
            assert_eq!(hub.subscribe(Remote::new(mine)).await.unwrap(), 1);
            // Handed out: the caller's side keeps the object for the server.
            assert_eq!(peer.handle_counts().exported, 1);
            assert_eq!(listeners.count(), 1);

            // Later calls, from the server, through the kept handle.
            assert_eq!(hub.publish("one".into()).await.unwrap(), 1);
            assert_eq!(hub.publish("two".into()).await.unwrap(), 1);
            assert_eq!(*heard.lock().unwrap(), ["one", "two"]);

            // The server drops it: released, and the object goes here.
            hub.unsubscribe_all().await.unwrap();
            listeners.settles_at(0).await;
            assert_eq!(peer.handle_counts().exported, 0);
            assert_eq!(hub.publish("three".into()).await.unwrap(), 0);
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn closing_the_connection_releases_every_handle() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, sessions) = serve(&addr).await;
            let listeners = Live::default();
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let hub = HubClient::new(&peer);
            let session = hub.login("ada".into()).await.unwrap();
            let (mine, _heard) = listener(&listeners);
            hub.subscribe(Remote::new(mine)).await.unwrap();
            assert_eq!((sessions.count(), listeners.count()), (1, 1));

            // The client goes away while both sides still hold handles:
            // each side's objects are dropped.
            peer.close().await;
            sessions.settles_at(0).await;
            listeners.settles_at(0).await;

            // The handle the client still holds is dead, with a clear error.
            let err = session.user().await.unwrap_err();
            assert!(
                matches!(err, RpcError::ConnectionClosed(_) | RpcError::NotConnected),
                "{err:?}"
            );
            // The server still holds the dead listener: calling it fails.
            let other = rpc_transport::connect(server.local_addr()).await.unwrap();
            assert_eq!(HubClient::new(&other).publish("x".into()).await.unwrap(), 0);
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn released_forged_and_foreign_names_are_refused() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, sessions) = serve(&addr).await;
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let hub = HubClient::new(&peer);

            // A released handle's name no longer reaches anything.
            let session = hub.login("ada".into()).await.unwrap();
            let name = session.name().unwrap().to_string();
            let user = format!("{name}.user");
            assert_eq!(peer.call::<String, _>(&user, &()).await.unwrap(), "ada");
            drop(session);
            sessions.settles_at(0).await;
            let err = peer.call::<String, _>(&user, &()).await.unwrap_err();
            assert_eq!(err, RpcError::Remote(RemoteError::DeadHandle(name.clone())));
            assert!(err.to_string().contains("released"), "{err}");

            // A guessed name reaches nothing either.
            let guess = "rpc.ref.0123456789abcdef0123456789abcdef.user";
            let err = peer.call::<String, _>(guess, &()).await.unwrap_err();
            assert!(
                matches!(err, RpcError::Remote(RemoteError::DeadHandle(_))),
                "{err:?}"
            );

            // A live handle of one connection is not reachable from another.
            let session = hub.login("bob".into()).await.unwrap();
            let user = format!("{}.user", session.name().unwrap());
            let other = rpc_transport::connect(server.local_addr()).await.unwrap();
            let err = other.call::<String, _>(&user, &()).await.unwrap_err();
            assert!(
                matches!(err, RpcError::Remote(RemoteError::DeadHandle(_))),
                "{err:?}"
            );
            assert_eq!(session.user().await.unwrap(), "bob");

            // A name passed where a handle is expected, without being
            // handed out with the message, is refused.
            let args = postcard::to_stdvec(&(session.name().unwrap(),)).unwrap();
            let err = peer.call_raw("Hub.ask", &args, None).await.unwrap_err();
            match err {
                RpcError::Remote(RemoteError::BadArguments(why)) => {
                    assert!(why.contains("not announced"), "{why}")
                }
                other => panic!("expected bad arguments, got {other:?}"),
            }
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_reconnect_does_not_revive_handles() {
    within(20, async {
        let (server, sessions) = serve("tcp://127.0.0.1:0").await;
        let peer = rpc_transport::connect(server.local_addr())
            .reconnect(rpc_transport::Backoff::default().initial(Duration::from_millis(10)))
            .await
            .unwrap();
        let hub = HubClient::new(&peer);
        let session = hub.login("ada".into()).await.unwrap();
        let first = peer.connection_id();
        // The server ends this connection; the client reconnects.
        server.peer(first).unwrap().close().await;
        sessions.settles_at(0).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while peer.connection_id() == first || !peer.is_connected() {
            assert!(Instant::now() < deadline, "no reconnect");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let err = session.user().await.unwrap_err();
        assert!(
            matches!(&err, RpcError::Remote(RemoteError::DeadHandle(n)) if Some(n.as_str()) == session.name()),
            "{err:?}"
        );
        // New handles work on the new connection.
        let again = hub.login("ada".into()).await.unwrap();
        assert_eq!(again.user().await.unwrap(), "ada");
        server.shutdown(Duration::from_secs(5)).await;
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn the_handle_limit_gives_a_clear_error_both_ways() {
    within(20, async {
        let sessions = Live::default();
        let server = Server::builder()
            .expose(new_hub(&sessions))
            .config(rpc_core::PeerConfig::default().max_handles(2))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer = rpc_transport::connect(server.local_addr())
            .config(rpc_core::PeerConfig::default().max_handles(3))
            .await
            .unwrap();
        let hub = HubClient::new(&peer);

        // The server hands out two, not three.
        let a = hub.login("a".into()).await.unwrap();
        let _b = hub.login("b".into()).await.unwrap();
        let err = hub.login("c".into()).await.unwrap_err();
        assert!(err.to_string().contains("max_handles"), "{err}");
        drop(a);
        sessions.settles_at(1).await;
        let _c = hub.login("c".into()).await.unwrap();
        drop((_b, _c));
        sessions.settles_at(0).await;

        // The client holds three at most: four in one reply are refused,
        // and released on the server at once.
        let server2 = Server::builder()
            .expose(new_hub(&sessions))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let peer2 = rpc_transport::connect(server2.local_addr())
            .config(rpc_core::PeerConfig::default().max_handles(3))
            .await
            .unwrap();
        let err = HubClient::new(&peer2).many(4).await.unwrap_err();
        assert!(err.to_string().contains("max_handles"), "{err}");
        sessions.settles_at(0).await;
        let three = HubClient::new(&peer2).many(3).await.unwrap();
        assert_eq!(three.len(), 3);
        assert_eq!(three[2].user().await.unwrap(), "u2");
        server.shutdown(Duration::from_secs(1)).await;
        server2.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn handles_are_sent_back_and_sent_on() {
    for (addr, _dir) in addresses() {
        within(20, async {
            let (server, _sessions) = serve(&addr).await;
            let listeners = Live::default();
            let peer = rpc_transport::connect(server.local_addr()).await.unwrap();
            let hub = HubClient::new(&peer);

            // Called by the handler during the call that brought it.
            let (mine, _heard) = listener(&listeners);
            assert_eq!(
                hub.ask(Remote::new(mine)).await.unwrap().unwrap(),
                "listener"
            );
            listeners.settles_at(0).await;

            // Sent back: calls through it go round through the server.
            let (mine, heard) = listener(&listeners);
            let back = hub.echo(Remote::new(mine)).await.unwrap();
            back.event("round trip".into()).await.unwrap();
            assert_eq!(*heard.lock().unwrap(), ["round trip"]);
            drop(back);
            listeners.settles_at(0).await;
            assert_eq!(peer.handle_counts(), Default::default());

            // Sent on to another client: its calls reach the first one.
            let (mine, heard) = listener(&listeners);
            hub.subscribe(Remote::new(mine)).await.unwrap();
            let other = rpc_transport::connect(server.local_addr()).await.unwrap();
            let theirs = HubClient::new(&other)
                .first_listener()
                .await
                .unwrap()
                .unwrap();
            theirs.event("from the other client".into()).await.unwrap();
            assert_eq!(*heard.lock().unwrap(), ["from the other client"]);
            // Both the server and the other client hold it now: it stays
            // until both let go.
            hub.unsubscribe_all().await.unwrap();
            theirs.event("still here".into()).await.unwrap();
            assert_eq!(listeners.count(), 1);
            drop(theirs);
            listeners.settles_at(0).await;
            server.shutdown(Duration::from_secs(5)).await;
        })
        .await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_remote_in_a_stream_item_is_refused_clearly() {
    within(20, async {
        // Encoding a handle outside a call has no connection to hand it
        // out on: the error says where handles can go.
        let err = postcard::to_stdvec(&Remote::new(Listener {
            heard: Arc::default(),
            _guard: Guard::new(&Live::default()),
        }))
        .unwrap_err();
        assert_eq!(err, postcard::Error::SerdeSerCustom);
    })
    .await;
}

#[tokio::test(flavor = "current_thread")]
async fn handles_in_a_message_not_sent_or_not_read_are_released() {
    within(20, async {
        let sessions = Live::default();
        let server = Server::builder()
            .expose(new_hub(&sessions))
            .config(rpc_core::PeerConfig::default().max_frame(1024))
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let listeners = Live::default();
        let peer = rpc_transport::connect(server.local_addr()).await.unwrap();

        // Not sent: the frame is over the server's limit, so the handle
        // handed out while encoding it is taken back at once.
        let (mine, _heard) = listener(&listeners);
        let big = vec![7u8; 4096];
        let err = peer
            .call::<(), _>("Hub.subscribe", &(Remote::new(mine), big))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::TooLarge { .. }), "{err:?}");
        assert_eq!(peer.handle_counts().exported, 0);
        listeners.settles_at(0).await;

        // Sent but never decoded: the call is refused (no such method), and
        // the server releases the handle it was announced.
        let (mine, _heard) = listener(&listeners);
        let err = peer
            .call::<(), _>("Hub.nosuch", &(Remote::new(mine),))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RpcError::Remote(RemoteError::UnknownMethod { .. })),
            "{err:?}"
        );
        listeners.settles_at(0).await;
        assert_eq!(peer.handle_counts().exported, 0);
        assert_eq!(server.peers()[0].handle_counts().imported, 0);
        server.shutdown(Duration::from_secs(1)).await;
    })
    .await;
}
