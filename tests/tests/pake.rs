//! The shared secret against an active attacker: a fake server that runs its
//! half of the key exchange cannot test guesses offline, and a relay that
//! alters the handshake is caught. `docs/security.md` gives the argument;
//! these tests run the attack it describes.
//!
//! The attacker is written from `docs/wire.md` and SPAKE2's group operations,
//! not from the library's handshake code, so it checks the documented key
//! schedule too.

use std::time::Duration;

use hmac::{Hmac, Mac};
use rpc_core::__wire::{Handshake, Hello, Verdict, MAGIC, VERSION};
use rpc_core::{DisconnectReason, RpcError};
use rpc_tests::fixtures::{Calc, CalcClient};
use rpc_tests::{next_disconnect, within};
use rpc_transport::Server;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Group};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type HmacSha256 = Hmac<Sha256>;

const SECRET: &str = "S3CRET";

/// Reads the 6-byte preamble and one handshake frame; gives the frame as
/// sent (length prefix included) and its message.
async fn read_opening(s: &mut TcpStream) -> (Vec<u8>, Vec<u8>, Handshake) {
    let mut pre = vec![0u8; 6];
    s.read_exact(&mut pre).await.unwrap();
    let (framed, msg) = read_message(s).await;
    (pre, framed, msg)
}

async fn read_message(s: &mut TcpStream) -> (Vec<u8>, Handshake) {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.unwrap();
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    s.read_exact(&mut body).await.unwrap();
    let msg = postcard::from_bytes(&body).unwrap();
    (framed(&body), msg)
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn frame(msg: &Handshake) -> Vec<u8> {
    framed(&postcard::to_stdvec(msg).unwrap())
}

fn preamble() -> Vec<u8> {
    let mut p = MAGIC.to_vec();
    p.extend_from_slice(&VERSION.to_be_bytes());
    p
}

/// The transcript digest of docs/wire.md: preamble and hello frame of the
/// dialer, then of the acceptor.
fn transcript(connector_hello: &[u8], acceptor_hello: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for hello in [connector_hello, acceptor_hello] {
        h.update(preamble());
        h.update(hello);
    }
    h.finalize().into()
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the fake server captured from one real client.
struct Capture {
    /// The dialer's SPAKE2 message (side byte and point).
    x_msg: Vec<u8>,
    /// The fake server's own SPAKE2 message and secret scalar.
    y_msg: Vec<u8>,
    y: <Ed25519Group as Group>::Scalar,
    transcript: [u8; 32],
    /// The dialer's key confirmation.
    confirm: [u8; 32],
}

/// Runs a fake server that answers one real dialer with a SPAKE2 message
/// made from `its_guess`, captures the dialer's key confirmation and hangs
/// up. Returns the capture and what the dialer reported.
async fn capture_from_a_real_client(its_guess: &str) -> (Capture, RpcError) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    let client = tokio::spawn(async move {
        rpc_transport::connect(addr.as_str())
            .secret(SECRET)
            .await
            .unwrap_err()
    });
    let (mut s, _) = listener.accept().await.unwrap();
    let (_, their_hello, msg) = read_opening(&mut s).await;
    let Handshake::Hello(Hello {
        pake: Some(x_msg), ..
    }) = msg
    else {
        panic!("the dialer sent no key-exchange message: {msg:?}")
    };

    // Y = y·G + w'·N, as SPAKE2's side B does, with a scalar the attacker
    // keeps.
    let y = Ed25519Group::hash_to_scalar(b"the fake server's own randomness");
    let w_guess = Ed25519Group::hash_to_scalar(its_guess.as_bytes());
    let y_point = Ed25519Group::add(
        &Ed25519Group::basepoint_mult(&y),
        &Ed25519Group::scalarmult(&Ed25519Group::const_n(), &w_guess),
    );
    let mut y_msg = vec![b'B'];
    y_msg.extend_from_slice(&Ed25519Group::element_to_bytes(&y_point));
    let my_hello = frame(&Handshake::Hello(Hello {
        max_frame: 1 << 20,
        max_in_flight: 16,
        pake: Some(y_msg.clone()),
        name: None,
    }));
    let mut out = preamble();
    out.extend_from_slice(&my_hello);
    s.write_all(&out).await.unwrap();

    let (_, msg) = read_message(&mut s).await;
    let Handshake::Confirm(confirm) = msg else {
        panic!("expected the dialer's confirmation, got {msg:?}")
    };
    drop(s);
    let error = client.await.unwrap();
    let capture = Capture {
        x_msg,
        y_msg,
        y,
        transcript: transcript(&their_hello, &my_hello),
        confirm,
    };
    (capture, error)
}

/// The attacker's offline test of one candidate secret: the key the dialer
/// would hold if its secret were `candidate`, computed from what the
/// attacker has (its own scalar `y` and the dialer's message), and the
/// confirmation the dialer would then have sent.
fn candidate_matches(c: &Capture, candidate: &str) -> bool {
    let w = Ed25519Group::hash_to_scalar(candidate.as_bytes());
    let x_point = Ed25519Group::bytes_to_element(&c.x_msg[1..]).unwrap();
    // K = y·(X − w·M)
    let unblinded = Ed25519Group::add(
        &x_point,
        &Ed25519Group::scalarmult(&Ed25519Group::const_m(), &Ed25519Group::scalar_neg(&w)),
    );
    let k = Ed25519Group::element_to_bytes(&Ed25519Group::scalarmult(&unblinded, &c.y));
    // SPAKE2's key: SHA-256 over H(pw), H(idA), H(idB), X, Y, K.
    let mut t = Vec::new();
    t.extend_from_slice(&sha(candidate.as_bytes()));
    t.extend_from_slice(&sha(b"rpc-core connector"));
    t.extend_from_slice(&sha(b"rpc-core acceptor"));
    t.extend_from_slice(&c.x_msg[1..]);
    t.extend_from_slice(&c.y_msg[1..]);
    t.extend_from_slice(&k);
    let key = sha(&t);
    let mut mac = <HmacSha256 as Mac>::new_from_slice(&key).unwrap();
    mac.update(b"rpc-core v3 confirm connector");
    mac.update(&c.transcript);
    mac.verify_slice(&c.confirm).is_ok()
}

/// A word list with the real secret in it, as an attacker's would be.
fn word_list() -> Vec<String> {
    let mut words: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
    words.extend(["secret", "s3cret", "S3CRET", "password", "wrong"].map(String::from));
    words
}

#[tokio::test]
async fn a_fake_server_with_a_wrong_secret_cannot_test_guesses_offline() {
    within(30, async {
        let (capture, error) = capture_from_a_real_client("wrong").await;
        // The dialer did not connect, and said why.
        assert!(matches!(error, RpcError::Protocol(_)), "{error:?}");
        let hits: Vec<String> = word_list()
            .into_iter()
            .filter(|w| candidate_matches(&capture, w))
            .collect();
        assert!(
            hits.is_empty(),
            "the captured handshake confirmed a guess offline: {hits:?}"
        );
    })
    .await;
}

/// The control for the test above: the same attacker code does find the
/// secret when the fake server's one online guess was right. So the test
/// above fails for the reason SPAKE2 gives, not because the attacker's
/// arithmetic is wrong.
#[tokio::test]
async fn the_attackers_one_online_guess_is_all_it_gets() {
    within(30, async {
        let (capture, _) = capture_from_a_real_client(SECRET).await;
        let hits: Vec<String> = word_list()
            .into_iter()
            .filter(|w| candidate_matches(&capture, w))
            .collect();
        assert_eq!(hits, vec![SECRET.to_string()]);
    })
    .await;
}

/// Which byte of the handshake a relay alters.
#[derive(Debug, Clone, Copy)]
enum Tamper {
    /// The dialer's hello: its announced name.
    DialerName,
    /// The dialer's hello: its call limit.
    DialerLimit,
    /// The server's hello: its frame limit.
    ServerLimit,
    /// The server's verdict: the connection id.
    ConnectionId,
}

/// A relay between a real client and a real server, both with the right
/// secret, that alters one field of the handshake and passes everything
/// else through.
async fn tampering_relay(server: String, tamper: Tamper) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("tcp://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut upstream = TcpStream::connect(server.trim_start_matches("tcp://"))
            .await
            .unwrap();
        let (pre, _, msg) = read_opening(&mut client).await;
        let Handshake::Hello(mut hello) = msg else {
            panic!()
        };
        match tamper {
            Tamper::DialerName => hello.name = Some("mallory".into()),
            Tamper::DialerLimit => hello.max_in_flight += 1,
            _ => {}
        }
        let mut out = pre;
        out.extend_from_slice(&frame(&Handshake::Hello(hello)));
        upstream.write_all(&out).await.unwrap();

        let (pre, _, msg) = read_opening(&mut upstream).await;
        let Handshake::Hello(mut hello) = msg else {
            panic!()
        };
        if let Tamper::ServerLimit = tamper {
            hello.max_frame -= 1;
        }
        let mut out = pre;
        out.extend_from_slice(&frame(&Handshake::Hello(hello)));
        client.write_all(&out).await.unwrap();

        // The dialer's confirmation, unchanged.
        let (confirm, _) = read_message(&mut client).await;
        upstream.write_all(&confirm).await.unwrap();
        // The verdict.
        let (verdict, msg) = read_message(&mut upstream).await;
        let verdict = match (tamper, msg) {
            (
                Tamper::ConnectionId,
                Handshake::Verdict(Verdict::Accepted {
                    connection_id,
                    confirm,
                }),
            ) => frame(&Handshake::Verdict(Verdict::Accepted {
                connection_id: connection_id + 1,
                confirm,
            })),
            _ => verdict,
        };
        client.write_all(&verdict).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    });
    addr
}

#[tokio::test]
async fn a_relay_that_alters_the_handshake_is_caught() {
    within(30, async {
        let server = Server::builder()
            .expose(Calc::default())
            .secret(SECRET)
            .bind("tcp://127.0.0.1:0")
            .await
            .unwrap();
        let mut events = server.events();
        for tamper in [
            Tamper::DialerName,
            Tamper::DialerLimit,
            Tamper::ServerLimit,
            Tamper::ConnectionId,
        ] {
            let relay = tampering_relay(server.local_addr().to_string(), tamper).await;
            let e = rpc_transport::connect(relay.as_str())
                .secret(SECRET)
                .name("alice")
                .await
                .unwrap_err();
            assert!(
                matches!(&e, RpcError::AuthFailed(m) if m.contains("altered")),
                "{tamper:?}: {e:?}"
            );
            if let Tamper::ConnectionId = tamper {
                // The server accepted; the dialer refused the altered verdict.
                continue;
            }
            let (_, reason) = next_disconnect(&mut events).await;
            assert_eq!(reason, DisconnectReason::AuthFailed, "{tamper:?}");
        }
        // An honest relay passes, so the failures above are the tampering.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = format!("tcp://{}", listener.local_addr().unwrap());
        let upstream = server.local_addr().to_string();
        tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut up = TcpStream::connect(upstream.trim_start_matches("tcp://"))
                .await
                .unwrap();
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        });
        let peer = rpc_transport::connect(relay.as_str())
            .secret(SECRET)
            .call_timeout(Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(CalcClient::new(&peer).add(2, 3).await.unwrap(), 5);
    })
    .await;
}

#[tokio::test]
async fn each_handshake_uses_fresh_randomness() {
    within(30, async {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..3 {
            let (capture, _) = capture_from_a_real_client("wrong").await;
            assert!(
                seen.insert(capture.x_msg),
                "a key-exchange message repeated"
            );
        }
    })
    .await;
}
