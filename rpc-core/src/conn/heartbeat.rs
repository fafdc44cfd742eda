//! The heartbeat task: pings an idle connection and drops a silent one.
//!
//! Owns: the judgement that the remote is gone. Liveness is counted in
//! whole frames (the reader notes each read that completed one), so bytes
//! trickling into a frame that never ends do not keep a connection alive.
//! A timer that fires late (this process was paused or starved) is no
//! evidence against the remote: it pings and waits again before judging.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Conn;
use crate::error::DisconnectReason;
use crate::wire::Header;

/// The heartbeat task.
pub(super) async fn heartbeat_loop(conn: Arc<Conn>, interval: Duration, timeout: Duration) {
    conn.heard_from();
    let quiet = interval.min(timeout / 2);
    let tick = quiet.max(Duration::from_millis(10));
    let mut due = Instant::now() + tick;
    loop {
        tokio::time::sleep_until(due).await;
        let now = Instant::now();
        let late = now.saturating_duration_since(due) > tick;
        due = now + tick;
        if late {
            // Paused or starved: whatever the clock says, the remote had no
            // chance to be heard. Ask it, and judge from here on.
            conn.heard_from();
            if conn.out.push_bare(&Header::Ping { id: 0 }).is_err() {
                return;
            }
            continue;
        }
        let idle = conn.silent_for();
        if idle >= timeout {
            conn.close(DisconnectReason::HeartbeatTimeout, false);
            return;
        }
        if idle >= quiet && conn.out.push_bare(&Header::Ping { id: 0 }).is_err() {
            return;
        }
    }
}
