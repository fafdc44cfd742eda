//! Bytes from a raw remote → `Peer::accept` or `Peer::connect` on an
//! in-memory pipe, on a current-thread runtime with a paused clock (a
//! handshake left waiting times out at once).
//!
//! Input layout: one flag byte, then the bytes the remote sends.
//! - bit 0: this side accepts (else it connects);
//! - bit 1: the remote closes its write half after its bytes (else it stays
//!   silent, and the handshake must time out);
//! - bit 2: this side has a shared secret;
//! - bit 3: a valid preamble is put in front of the bytes.
//!
//! Without a secret the outcome is compared with a reference of what the
//! handshake must do with these bytes; with one it must fail (the remote
//! cannot complete a SPAKE2 exchange without the secret).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rpc_core::__wire::{MAGIC, VERSION};
use rpc_core::{Peer, PeerConfig, Registry};
use tokio::io::AsyncWriteExt;

#[path = "../../rpc-core/tests/support/reference.rs"]
mod reference;
use reference::{agrees, expect_handshake};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let accepting = flags & 1 != 0;
    let eof = flags & 2 != 0;
    let secret = flags & 4 != 0;
    let mut bytes = Vec::with_capacity(6 + rest.len());
    if flags & 8 != 0 {
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&VERSION.to_be_bytes());
    }
    bytes.extend_from_slice(&rest[..rest.len().min(32 * 1024)]);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    rt.block_on(async {
        // Everything the remote says is in the pipe before the handshake starts.
        let (mut remote, local) = tokio::io::duplex(64 * 1024);
        remote.write_all(&bytes).await.unwrap();
        if eof {
            remote.shutdown().await.unwrap();
        }
        let mut config = PeerConfig::default().handshake_timeout(HANDSHAKE_TIMEOUT);
        if secret {
            config = config.secret("fuzz");
        }
        let run = async {
            if accepting {
                Peer::accept(local, Registry::new(), config, 7).await
            } else {
                Peer::connect(local, Registry::new(), config).await
            }
        };
        let got = tokio::time::timeout(HANDSHAKE_TIMEOUT * 10, run)
            .await
            .expect("the handshake outlived its own timeout");
        if secret {
            assert!(got.is_err(), "authenticated without the secret");
        } else {
            let want = expect_handshake(&bytes, eof, accepting);
            let got = got.map(|peer| peer.connection_id());
            assert!(agrees(&got, &want), "got {got:?}, want {want:?}");
        }
        drop(remote);
    });
});
