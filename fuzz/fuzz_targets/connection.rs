//! Bytes from a raw remote after a good handshake → an established
//! connection (`Peer::accept` on an in-memory pipe, serving an `Echo`
//! object), checked against the reference of what those bytes must do.
//!
//! Input: the bytes the remote sends once the handshake is done (frames,
//! well formed or not, and noise); the remote then pings (when the
//! reference says the connection must still be open) and closes its side.
//! - whole, well-formed frames only: the connection still answers a ping and
//!   ends, when the remote closes, as closed by the peer;
//! - a frame over the limit or a bad header, or a stream ending inside a
//!   frame: it ends with a protocol error;
//! - a goodbye or a shutdown notice: it ends with that reason;
//! - a call id repeated while its first call may still run: open, or a
//!   protocol error naming the id;
//! and never a panic, even inside the connection's tasks, and never a hang.

#![no_main]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rpc_core::__wire::{
    decode_header, encode_frame, FrameReader, Handshake, Header, Hello, Verdict, MAGIC, VERSION,
};
use rpc_core::{expose, DisconnectReason, Peer, PeerConfig, Registry};
use tokio::io::AsyncWriteExt;

#[path = "../../rpc-core/tests/support/reference.rs"]
mod reference;
use reference::{fate_of, Fate};

const MAX_FRAME: u32 = 1024;
/// The id of the ping that checks the connection still answers.
const PROBE: u64 = 1 << 40;

/// An object for the remote's calls to land on.
pub struct Echo;

#[expose]
impl Echo {
    /// Returns its argument.
    pub fn echo(&self, x: u32) -> u32 {
        x
    }

    /// Returns its argument after yielding once.
    pub async fn later(&self, x: u32) -> u32 {
        tokio::task::yield_now().await;
        x
    }
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// Counts panics anywhere, spawned tasks included (their panics do not
/// reach the fuzzer otherwise).
fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
}

fn framed(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

async fn run(script: &[u8], fate: Fate) {
    let (remote, local) = tokio::io::duplex(256 * 1024);
    let (rd, mut wr) = tokio::io::split(remote);
    let registry = Registry::new();
    registry.expose(Echo);
    let config = PeerConfig::default().max_frame(MAX_FRAME);
    let hello = Handshake::Hello(Hello {
        max_frame: 1 << 20,
        max_in_flight: 16,
        pake: None,
        name: None,
    });
    let mut opening = MAGIC.to_vec();
    opening.extend_from_slice(&VERSION.to_be_bytes());
    opening.extend(framed(&postcard::to_stdvec(&hello).unwrap()));
    wr.write_all(&opening).await.unwrap();
    let peer = Peer::accept(local, registry, config, 9).await.unwrap();
    let mut frames = FrameReader::new(rd, 1 << 20);
    let mut pre = [0u8; 6];
    frames.read_raw(&mut pre).await.unwrap();
    for _ in 0..2 {
        let frame = frames.next_frame().await.unwrap().unwrap();
        if let Handshake::Verdict(v) = postcard::from_bytes(&frame).unwrap() {
            assert_eq!(
                v,
                Verdict::Accepted {
                    connection_id: 9,
                    confirm: None
                }
            );
        }
    }
    let (pongs, mut pong_rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(f)) = frames.next_frame().await {
            if let Ok((Header::Pong { id }, _)) = decode_header(&f) {
                let _ = pongs.send(id);
            }
        }
    });

    let written = wr.write_all(script).await;
    if matches!(fate, Fate::Open | Fate::Partial) {
        assert!(written.is_ok(), "{written:?}");
    }
    if fate == Fate::Open {
        let mut probe = Vec::new();
        encode_frame(&mut probe, &Header::Ping { id: PROBE }, &()).unwrap();
        wr.write_all(&probe).await.unwrap();
        loop {
            match pong_rx.recv().await {
                Some(PROBE) => break,
                Some(_) => {}
                None => panic!("the peer stopped answering"),
            }
        }
        assert!(peer.is_connected());
    }
    let _ = wr.shutdown().await;
    let reason = peer.closed().await;
    match fate {
        Fate::Open | Fate::Goodbye => assert_eq!(reason, DisconnectReason::ClosedByPeer),
        Fate::Shutdown => assert_eq!(reason, DisconnectReason::Shutdown),
        Fate::Partial | Fate::Malformed => {
            assert!(matches!(reason, DisconnectReason::Protocol(_)), "{reason:?}")
        }
        Fate::MaybeDuplicate => assert!(
            reason == DisconnectReason::ClosedByPeer
                || matches!(&reason, DisconnectReason::Protocol(m) if m.contains("already in flight")),
            "{reason:?}"
        ),
    }
    assert!(!peer.is_connected());
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 4096 {
        return;
    }
    count_panics();
    let before = PANICS.load(Ordering::SeqCst);
    let fate = fate_of(data, MAX_FRAME);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), run(data, fate)).await });
    assert!(done.is_ok(), "stuck (expected {fate:?})");
    assert_eq!(PANICS.load(Ordering::SeqCst), before, "a task panicked");
});
