//! TLS over real TCP and Unix sockets (rpc-transport's `tls` feature), with
//! certificates made at run time: calls both ways, the client certificate
//! as the caller's identity, and what each side sees when TLS fails.

use std::time::Duration;

use rpc_core::{expose, CallContext, DisconnectReason, PeerConfig, RpcError, Status};
use rpc_tests::fixtures::{Calc, CalcClient};
use rpc_tests::pki::{client_config, server_config, server_config_optional_clients, Ca};
use rpc_tests::raw::raw;
use rpc_tests::{accepted, addresses, init_tracing, next_disconnect, within};
use rpc_transport::tls::CertificateInfo;
use rpc_transport::{connect, Backoff, Event, Server};
use tokio::io::AsyncWriteExt;

/// Tells the caller who its verified certificate says it is, and calls it
/// back during the call.
pub struct Gate;

#[expose]
impl Gate {
    /// The common name and DNS names of the caller's verified certificate.
    pub fn caller(&self, cx: CallContext) -> Option<(String, Vec<String>)> {
        let info = CertificateInfo::from_identity(cx.peer_identity()?)?;
        Some((info.common_name()?.to_owned(), info.dns_names().to_vec()))
    }

    /// Returns `data` unchanged.
    pub fn echo(&self, data: Vec<u8>) -> Vec<u8> {
        data
    }

    /// Asks the caller's `Me` object for its name, inside this call.
    pub async fn greet(&self, cx: CallContext) -> Result<String, RpcError> {
        let name: String = cx.peer().call("Me.name", &()).await?;
        Ok(format!("hello, {name}"))
    }
}

/// The client's callback object.
pub struct Me;

#[expose]
impl Me {
    /// Its name.
    pub fn name(&self) -> String {
        "Ada".into()
    }
}

/// The reason of the next `Disconnected` event, and where it came from.
async fn next_failure(events: &mut rpc_transport::Events) -> (DisconnectReason, String) {
    loop {
        match events.recv().await {
            Some(Event::Disconnected { reason, remote, .. }) => return (reason, remote),
            Some(_) => {}
            None => panic!("event stream ended"),
        }
    }
}

/// The text of a `DisconnectReason::Io`, failing the test on any other.
fn io_reason(reason: &DisconnectReason) -> &str {
    match reason {
        DisconnectReason::Io(m) => m,
        other => panic!("expected an i/o reason, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_go_both_ways_over_tls() {
    init_tracing();
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .expose(Gate)
                .expose(Calc::default())
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            let client = connect(server.local_addr())
                .tls(client_config(&ca, None), "localhost")
                .expose(Me)
                .await
                .unwrap();
            // Client to server, and the server back into the client inside
            // the call.
            assert_eq!(CalcClient::new(&client).add(2, 3).await.unwrap(), 5);
            let greeting = GateClient::new(&client).greet().await.unwrap().unwrap();
            assert_eq!(greeting, "hello, Ada");
            // The server calls the client outside any call too.
            let server_side = accepted(&mut events).await;
            let name: String = server_side.call("Me.name", &()).await.unwrap();
            assert_eq!(name, "Ada");
            // The client knows the server by its verified certificate; the
            // server knows no client certificate (none was asked for).
            let theirs = CertificateInfo::from_identity(&client.peer_identity().unwrap()).unwrap();
            assert_eq!(theirs.common_name(), Some("rpc test server"));
            assert_eq!(theirs.issuer(), "CN=test CA");
            assert_eq!(server_side.peer_identity(), None);
            assert_eq!(GateClient::new(&client).caller().await.unwrap(), None);
            // Payloads larger than a TLS record (16 KiB) arrive whole.
            let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
            let back = GateClient::new(&client).echo(big.clone()).await.unwrap();
            assert_eq!(back, big);
        })
        .await;
    }
}

#[tokio::test]
async fn client_certificates_are_the_callers_identity() {
    init_tracing();
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), Some(&ca));
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .expose(Gate)
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            let worker = ca.issue("worker-7", &["worker-7.example"]);
            let client = connect(server.local_addr())
                .tls(client_config(&ca, Some(&worker)), "localhost")
                .await
                .unwrap();

            // The handler sees the verified client certificate...
            let seen = GateClient::new(&client).caller().await.unwrap();
            assert_eq!(
                seen,
                Some(("worker-7".into(), vec!["worker-7.example".into()]))
            );
            // ...and so does the server's Connected event, byte for byte.
            let server_side = accepted(&mut events).await;
            let identity = server_side.peer_identity().unwrap();
            assert_eq!(identity.certificate(), worker.chain[0].as_ref());
            let info = CertificateInfo::from_identity(&identity).unwrap();
            assert_eq!(info.subject(), "CN=worker-7");
            assert_eq!(info.issuer(), "CN=test CA");

            // Each connection has its own identity.
            let other = ca.issue("worker-8", &["worker-8.example"]);
            let second = connect(server.local_addr())
                .tls(client_config(&ca, Some(&other)), "localhost")
                .await
                .unwrap();
            let seen = GateClient::new(&second).caller().await.unwrap();
            assert_eq!(seen.map(|(cn, _)| cn).as_deref(), Some("worker-8"));
            let seen = GateClient::new(&client).caller().await.unwrap();
            assert_eq!(seen.map(|(cn, _)| cn).as_deref(), Some("worker-7"));
        })
        .await;
    }
}

#[tokio::test]
async fn an_optional_client_certificate_identifies_only_those_who_send_one() {
    let ca = Ca::new("test CA");
    let server_tls = server_config_optional_clients(&ca.server_leaf(), &ca);
    within(10, async {
        let server = Server::builder()
            .expose(Gate)
            .tls(server_tls)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let anonymous = connect(server.local_addr())
            .tls(client_config(&ca, None), "localhost")
            .await
            .unwrap();
        assert_eq!(GateClient::new(&anonymous).caller().await.unwrap(), None);
        let worker = ca.issue("worker-7", &[]);
        let known = connect(server.local_addr())
            .tls(client_config(&ca, Some(&worker)), "localhost")
            .await
            .unwrap();
        let seen = GateClient::new(&known).caller().await.unwrap();
        assert_eq!(seen, Some(("worker-7".into(), vec![])));
    })
    .await;
}

#[tokio::test]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    init_tracing();
    let ca = Ca::new("test CA");
    let stranger = Ca::new("another CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            let err = connect(server.local_addr())
                .tls(client_config(&stranger, None), "localhost")
                .await
                .unwrap_err();
            let RpcError::Io(io) = &err else {
                panic!("expected an i/o error, got {err:?}")
            };
            assert_eq!(
                io.context(),
                format!("TLS handshake with {}", server.local_addr())
            );
            assert!(err.to_string().contains("UnknownIssuer"), "{err}");

            let (reason, remote) = next_failure(&mut events).await;
            let text = io_reason(&reason);
            assert!(text.starts_with("TLS handshake failed"), "{text}");
            assert!(text.contains("UnknownCA"), "{text}");
            if addr.starts_with("tcp://") {
                assert!(remote.starts_with("127.0.0.1:"), "{remote}");
            }
        })
        .await;
    }
}

#[tokio::test]
async fn a_server_certificate_for_another_name_is_refused() {
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    within(10, async {
        let server = Server::builder()
            .tls(server_tls)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let mut events = server.events();
        let err = connect(server.local_addr())
            .tls(client_config(&ca, None), "db.example.com")
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Io(_)), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("TLS handshake with tcp://127.0.0.1:"),
            "{text}"
        );
        assert!(text.contains("not valid for name"), "{text}");
        assert!(text.contains("db.example.com"), "{text}");
        let (reason, _) = next_failure(&mut events).await;
        assert!(io_reason(&reason).contains("BadCertificate"), "{reason}");

        // The IP address in the certificate is a name too.
        let by_ip = connect(server.local_addr())
            .tls(client_config(&ca, None), "127.0.0.1")
            .await
            .unwrap();
        by_ip.ping().await.unwrap();

        // A name that is neither a DNS name nor an IP address.
        let bad = connect(server.local_addr())
            .tls(client_config(&ca, None), "not a host name")
            .await
            .unwrap_err();
        assert!(
            matches!(&bad, RpcError::BadAddress(m) if m.contains("not a valid TLS server name")),
            "{bad:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn a_plain_client_is_told_the_server_requires_tls() {
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            let err = connect(server.local_addr()).await.unwrap_err();
            assert!(
                matches!(&err, RpcError::Refused(m) if m.contains("requires TLS")),
                "{err:?}"
            );
            let (reason, _) = next_failure(&mut events).await;
            assert!(
                matches!(&reason, DisconnectReason::Refused(m) if m.contains("requires TLS")),
                "{reason:?}"
            );
            // A TLS server counts as available to the plain probe: it
            // answered in the protocol.
            assert!(
                rpc_transport::server_available(server.local_addr(), Duration::from_secs(2)).await
            );
        })
        .await;
    }
}

#[tokio::test]
async fn a_tls_client_is_told_the_server_does_not_speak_tls() {
    let ca = Ca::new("test CA");
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder().bind(&addr).await.unwrap();
            let mut events = server.events();
            let err = connect(server.local_addr())
                .tls(client_config(&ca, None), "localhost")
                .await
                .unwrap_err();
            assert!(matches!(err, RpcError::Io(_)), "{err:?}");
            let text = err.to_string();
            assert!(text.starts_with("TLS handshake with "), "{text}");
            assert!(text.contains("did not answer in TLS"), "{text}");
            let (reason, _) = next_failure(&mut events).await;
            assert!(
                matches!(&reason, DisconnectReason::Protocol(m) if m.contains("does not speak this protocol")),
                "{reason:?}"
            );
        })
        .await;
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_where_one_is_required() {
    init_tracing();
    let ca = Ca::new("test CA");
    let stranger = Ca::new("another CA");
    let server_tls = server_config(&ca.server_leaf(), Some(&ca));
    for (addr, _dir) in addresses() {
        within(10, async {
            let server = Server::builder()
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();

            // No certificate at all.
            let err = connect(server.local_addr())
                .tls(client_config(&ca, None), "localhost")
                .await
                .unwrap_err();
            let RpcError::Io(io) = &err else {
                panic!("expected an i/o error, got {err:?}")
            };
            assert_eq!(
                io.context(),
                format!("TLS handshake with {}", server.local_addr())
            );
            assert!(err.to_string().contains("CertificateRequired"), "{err}");
            let (reason, _) = next_failure(&mut events).await;
            assert!(
                io_reason(&reason).contains("peer sent no certificates"),
                "{reason}"
            );

            // A certificate from a CA the server does not trust.
            let forged = stranger.issue("worker-7", &[]);
            let err = connect(server.local_addr())
                .tls(client_config(&ca, Some(&forged)), "localhost")
                .await
                .unwrap_err();
            assert!(matches!(err, RpcError::Io(_)), "{err:?}");
            assert!(err.to_string().starts_with("TLS handshake with "), "{err}");
            let (reason, _) = next_failure(&mut events).await;
            assert!(io_reason(&reason).contains("UnknownIssuer"), "{reason}");
        })
        .await;
    }
}

#[tokio::test]
async fn a_reconnecting_client_does_tls_again_on_every_connection() {
    init_tracing();
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), Some(&ca));
    let worker = ca.issue("worker-7", &[]);
    for (addr, _dir) in addresses() {
        within(20, async {
            let server = Server::builder()
                .expose(Gate)
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let addr = server.local_addr().clone();
            let backoff = Backoff::default().initial(Duration::from_millis(20));
            let client = connect(&addr)
                .tls(client_config(&ca, Some(&worker)), "localhost")
                .reconnect(backoff)
                .await
                .unwrap();
            assert!(GateClient::new(&client).caller().await.unwrap().is_some());

            // The server goes away; a new one comes up at the same address.
            let mut status = client.status();
            drop(server);
            status
                .wait_for(|s| *s == Status::Reconnecting)
                .await
                .unwrap();
            let server = Server::builder()
                .expose(Gate)
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            status.wait_for(|s| *s == Status::Connected).await.unwrap();

            // The new connection went through TLS again, with the client's
            // certificate.
            let seen = GateClient::new(&client).caller().await.unwrap();
            assert_eq!(seen.map(|(cn, _)| cn).as_deref(), Some("worker-7"));
            let server_side = accepted(&mut events).await;
            assert_eq!(server_side.connection_id(), client.connection_id());
            assert!(server_side.peer_identity().is_some());
            assert!(client.peer_identity().is_some());

            // The connection is cut under the client: it reconnects again.
            server_side.close().await;
            let (_, reason) = next_disconnect(&mut events).await;
            assert_eq!(reason, DisconnectReason::Closed);
            let again = accepted(&mut events).await;
            assert!(again.peer_identity().is_some());
            status.wait_for(|s| *s == Status::Connected).await.unwrap();
            let seen = GateClient::new(&client).caller().await.unwrap();
            assert_eq!(seen.map(|(cn, _)| cn).as_deref(), Some("worker-7"));
            client.close().await;
        })
        .await;
    }
}

#[tokio::test]
async fn failed_tls_handshakes_leave_other_connections_alone() {
    init_tracing();
    let ca = Ca::new("test CA");
    let stranger = Ca::new("another CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    for (addr, _dir) in addresses() {
        within(20, async {
            let config = PeerConfig::default().handshake_timeout(Duration::from_millis(300));
            let server = Server::builder()
                .expose(Calc::default())
                .config(config)
                .tls(server_tls.clone())
                .bind(&addr)
                .await
                .unwrap();
            let mut events = server.events();
            let good = connect(server.local_addr())
                .tls(client_config(&ca, None), "localhost")
                .await
                .unwrap();
            let calc = CalcClient::new(&good);
            assert_eq!(calc.add(1, 2).await.unwrap(), 3);
            let _ = accepted(&mut events).await;

            // A call in flight on the good connection while the others fail.
            let slow = tokio::spawn({
                let calc = calc.clone();
                async move { calc.slow(500).await }
            });

            // A client trusting another CA, a plain client, a TLS client
            // that gives the wrong name, a socket that says nothing (held
            // until the handshake timeout), and a socket that starts a TLS
            // record and sends garbage.
            let unknown_ca = connect(server.local_addr())
                .tls(client_config(&stranger, None), "localhost")
                .await;
            assert!(matches!(unknown_ca, Err(RpcError::Io(_))));
            assert!(matches!(
                connect(server.local_addr()).await,
                Err(RpcError::Refused(_))
            ));
            let wrong_name = connect(server.local_addr())
                .tls(client_config(&ca, None), "elsewhere.example")
                .await;
            assert!(matches!(wrong_name, Err(RpcError::Io(_))));
            let mut silent = raw(server.local_addr()).await;
            let mut garbage = raw(server.local_addr()).await;
            garbage
                .write_all(&[0x16, 0x03, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5])
                .await
                .unwrap();

            let mut reasons = Vec::new();
            for _ in 0..5 {
                reasons.push(next_failure(&mut events).await.0);
            }
            let timed_out = DisconnectReason::Protocol(
                "the TLS handshake did not finish within 300ms".into(),
            );
            assert!(reasons.contains(&timed_out), "{reasons:?}");
            assert_eq!(
                reasons
                    .iter()
                    .filter(|r| matches!(r, DisconnectReason::Io(m) if m.starts_with("TLS handshake failed")))
                    .count(),
                3,
                "{reasons:?}"
            );

            // The good connection never noticed, and new ones still come in.
            assert_eq!(slow.await.unwrap().unwrap(), 500);
            assert_eq!(calc.add(20, 22).await.unwrap(), 42);
            let late = connect(server.local_addr())
                .tls(client_config(&ca, None), "localhost")
                .await
                .unwrap();
            assert_eq!(CalcClient::new(&late).add(1, 1).await.unwrap(), 2);
            let _ = silent.flush().await;
        })
        .await;
    }
}

#[tokio::test]
async fn a_silent_tls_server_times_out() {
    let ca = Ca::new("test CA");
    within(10, async {
        // Accepts and never says a word.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", listener.local_addr().unwrap());
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let limit = Duration::from_millis(300);
        let err = connect(&addr)
            .config(PeerConfig::default().handshake_timeout(limit))
            .tls(client_config(&ca, None), "localhost")
            .await
            .unwrap_err();
        assert_eq!(err, RpcError::HandshakeTimeout(limit));
        hold.abort();
    })
    .await;
}

#[tokio::test]
async fn tls_handshakes_count_against_max_handshaking() {
    let ca = Ca::new("test CA");
    let server_tls = server_config(&ca.server_leaf(), None);
    within(10, async {
        let server = Server::builder()
            .tls(server_tls)
            .max_handshaking(1)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let mut events = server.events();
        // One socket sits in its TLS handshake, saying nothing...
        let _silent = raw(server.local_addr()).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        // ...so the next client is refused, and reads why inside TLS.
        let err = connect(server.local_addr())
            .tls(client_config(&ca, None), "localhost")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RpcError::Refused(m) if m.contains("in their handshake")),
            "{err:?}"
        );
        let (reason, _) = next_failure(&mut events).await;
        assert!(matches!(reason, DisconnectReason::Refused(_)), "{reason:?}");
    })
    .await;
}
