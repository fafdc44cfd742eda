//! The writer task: drains the outbox into the socket.
//!
//! Owns: the write half. Everything queued since its last wake-up goes out
//! in one `write` (coalescing). Once the connection has closed it flushes
//! what is left for at most [`FLUSH_GRACE`], shuts the stream down, and
//! marks the connection flushed.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::outbox::Take;
use super::Conn;
use crate::error::DisconnectReason;

/// How long the writer may go on flushing after the connection closed.
const FLUSH_GRACE: Duration = Duration::from_secs(2);

/// How long a writer that found the remote gone lets the reader name the
/// reason, from what the remote sent before it went.
const READER_GRACE: Duration = Duration::from_millis(250);

/// A write buffer larger than this is released after use.
const KEEP_WRITE_CAPACITY: usize = 256 * 1024;

/// Finishes a write within [`FLUSH_GRACE`].
async fn flush_within(
    write: std::pin::Pin<&mut impl Future<Output = std::io::Result<()>>>,
) -> std::io::Result<()> {
    match tokio::time::timeout(FLUSH_GRACE, write).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the peer did not read what was left to send",
        )),
    }
}

/// Resolves once the connection has closed.
async fn closed_changed(rx: &mut tokio::sync::watch::Receiver<super::State>) {
    let _ = rx.wait_for(|s| s.reason.is_some()).await;
}

/// Whether the writer, woken by a first frame, lets the other ready tasks
/// run before it takes the queue. On tokio's multi-threaded runtime a woken
/// task runs next (its "LIFO slot"), so without this the writer would send
/// each caller's frame in a write of its own; with it, the frames of every
/// caller woken in the same round go out together, as they do on a
/// current-thread runtime, where a woken task waits its turn anyway (and the
/// extra yield only costs). It is done only while other calls are in
/// flight ([`Conn::busy`]): a lone call gains nothing from waiting, and the
/// yield (which polls the I/O driver first) would add to its latency.
/// Measured with `rpc-bench --threads 1 --multi-thread`: par-add and
/// conns-16 went from level with the hand-written floor to 2-3.4 times it.
fn gathers() -> bool {
    tokio::runtime::Handle::current().runtime_flavor()
        != tokio::runtime::RuntimeFlavor::CurrentThread
}

/// The writer task.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(conn: Arc<Conn>, mut wr: W) {
    let mut spare: Vec<u8> = Vec::new();
    let mut closed = conn.state.subscribe();
    let gather = gathers();
    loop {
        match conn.out.take(&mut spare) {
            Take::Bytes => {}
            Take::Empty => {
                conn.out.wait_bytes().await;
                if gather && conn.busy() {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            Take::Done => break,
        }
        let write = async {
            wr.write_all(&spare).await?;
            wr.flush().await
        };
        tokio::pin!(write);
        // A write may wait as long as the remote takes to read while the
        // connection is open; once it has closed, only `FLUSH_GRACE` more
        // (a remote that stopped reading must not pin this task and its
        // buffer forever).
        let res = if closed.borrow().reason.is_some() {
            flush_within(write).await
        } else {
            tokio::select! {
                r = &mut write => r,
                _ = closed_changed(&mut closed) => flush_within(write).await,
            }
        };
        if let Err(e) = res {
            let reason = DisconnectReason::from_io(&e);
            if reason == DisconnectReason::ClosedByPeer {
                // The remote closed its end. What it said before that (a
                // goodbye saying it shuts down, say) is in the reader's
                // hands: let the reader name the reason if it can.
                let ended = conn.clone().wait_closed();
                let _ = tokio::time::timeout(READER_GRACE, ended).await;
            }
            conn.close(reason, false);
            break;
        }
        spare.clear();
        if spare.capacity() > KEEP_WRITE_CAPACITY {
            spare = Vec::new();
        }
    }
    let _ = tokio::time::timeout(FLUSH_GRACE, wr.shutdown()).await;
    conn.state.send_modify(|s| s.flushed = true);
}
