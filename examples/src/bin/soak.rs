//! A soak / chaos test: many clients call a server in another process for a
//! bounded time while the run breaks things on purpose, then every call is
//! accounted for.
//!
//! Run it with
//!
//! ```text
//! cargo run --release -p rpc-examples --bin soak -- --seconds 60 --clients 16
//! cargo run --release -p rpc-examples --bin soak -- --transport unix --seed 42
//! ```
//!
//! It is never run by CI. What it does:
//!
//! - starts the server as a child process: it runs its own binary again with
//!   the hidden `--serve --listen ADDR` flags; the child serves a [`Soak`]
//!   object (`echo`, `add`, `slow`), prints its bound address on its first
//!   stdout line, obeys `cut` lines on its stdin (close every connection) and
//!   exits when its stdin closes;
//! - runs `--clients` client tasks (each with `--depth` calls in flight on one
//!   connection, a call timeout and reconnection with backoff), each call
//!   carrying a unique value whose reply is checked;
//! - at random intervals (PRNG seeded by `--seed`, printed at the start so a
//!   run can be repeated) it does one chaos event: kills a client task and
//!   starts a fresh one, closes a client's connection from the client side,
//!   makes the server close every connection, pauses the server process with
//!   `SIGSTOP` for 0.1 to 3 s then `SIGCONT`, or kills it with `SIGKILL` and
//!   restarts it on the same address. Each kind can be turned off
//!   (`--no-kill-client`, `--no-client-cut`, `--no-server-cut`, `--no-pause`,
//!   `--no-kill-server`, or `--no-chaos` for all);
//! - classifies every call: `ok` (the reply matched), `failed` (an
//!   `RpcError`, counted per kind), `lost` (neither a reply nor an error
//!   within the call timeout plus `--lost-grace-ms`), `mismatched` (a reply
//!   that is not the one expected), or `aborted` (its client task was killed
//!   by the chaos while the call was in flight);
//! - also watches the peer's status: a call that fails with
//!   `ConnectionClosed` while the status still says `Connected` is a "status
//!   lag"; the lane then waits (polling) until the status catches up, and
//!   the lag is timed. A lane failing many calls in a row is logged as an
//!   "error storm";
//! - prints a summary and exits with status 1 when any call was lost or
//!   mismatched, a connect attempt hung, a status lag lasted over 2 s, or
//!   the server could not be restarted; 0 otherwise.
//!
//! The server child is killed at the end and on Ctrl-C, and the Unix socket
//! (in a directory under the system's temporary directory) is removed.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, ValueEnum};
use rpc_core::{expose, DisconnectReason, Peer, RemoteError, RpcError, Status};
use rpc_transport::{Backoff, Server};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// The command line.
#[derive(Parser, Debug)]
#[command(
    about = "Soak / chaos test: clients call a server child process while the run breaks things"
)]
struct Args {
    /// How long to make calls, in seconds (then in-flight calls are drained).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Number of client tasks, each with its own connection.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Calls in flight at once on each client's connection.
    #[arg(long, default_value_t = 2)]
    depth: usize,
    /// The transport to use.
    #[arg(long, value_enum, default_value_t = Transport::Tcp)]
    transport: Transport,
    /// Seed of the pseudo-random generator (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// The call timeout of every client, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    call_timeout_ms: u64,
    /// A call with no answer and no error this long after its timeout is lost.
    #[arg(long, default_value_t = 5000)]
    lost_grace_ms: u64,
    /// Mean time between chaos events, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    chaos_ms: u64,
    /// Turn every kind of chaos off.
    #[arg(long)]
    no_chaos: bool,
    /// Do not kill client tasks.
    #[arg(long)]
    no_kill_client: bool,
    /// Do not close connections from the client side.
    #[arg(long)]
    no_client_cut: bool,
    /// Do not make the server close every connection.
    #[arg(long)]
    no_server_cut: bool,
    /// Do not pause the server process (SIGSTOP / SIGCONT).
    #[arg(long)]
    no_pause: bool,
    /// Do not kill (SIGKILL) and restart the server process.
    #[arg(long)]
    no_kill_server: bool,
    /// Print the library's debug log (parent and child, on stderr).
    #[arg(short, long)]
    verbose: bool,
    /// Internal: run as the server child.
    #[arg(long, hide = true)]
    serve: bool,
    /// Internal: the address the server child binds.
    #[arg(long, hide = true)]
    listen: Option<String>,
}

/// Which socket kind the run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Transport {
    /// TCP on 127.0.0.1, an ephemeral port kept across server restarts.
    Tcp,
    /// A Unix socket in a fresh directory under the temporary directory.
    Unix,
}

/// The object the server child exposes.
#[derive(Debug, Default, Clone, Copy)]
pub struct Soak;

#[expose]
impl Soak {
    /// Returns `value` unchanged.
    pub fn echo(&self, value: u64) -> u64 {
        value
    }

    /// Returns `a + b` (wrapping).
    pub fn add(&self, a: u64, b: u64) -> u64 {
        a.wrapping_add(b)
    }

    /// Waits `ms` milliseconds, then returns `token`.
    pub async fn slow(&self, ms: u64, token: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        token
    }
}

// ---------------------------------------------------------------------------
// Pseudo-random numbers
// ---------------------------------------------------------------------------

/// A xorshift64* generator: small, fast, reproducible from its seed.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value, zero included).
    fn new(seed: u64) -> Self {
        // splitmix64 of the seed, so that close seeds give unrelated streams.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Rng(z | 1)
    }

    /// The next 64 random bits.
    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `1 / n`.
    fn one_in(&mut self, n: u64) -> bool {
        self.next_u64() % n == 0
    }

    /// A new generator whose stream is derived from this one.
    fn fork(&mut self) -> Rng {
        Rng::new(self.next_u64())
    }
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

/// Counters shared by every task of the run.
#[derive(Default)]
struct Stats {
    /// Calls started.
    made: AtomicU64,
    /// Replies equal to what was expected.
    ok: AtomicU64,
    /// Calls that returned an `RpcError`.
    failed: AtomicU64,
    /// Calls with neither a reply nor an error in time.
    lost: AtomicU64,
    /// Replies different from what was expected.
    mismatched: AtomicU64,
    /// Calls dropped because the chaos killed their client task.
    aborted: AtomicU64,
    /// Calls started and not yet classified.
    in_flight: AtomicU64,
    /// Slow calls meant to outlast the timeout that got a reply instead.
    overtime_answered: AtomicU64,
    /// Slowest matching reply, in microseconds.
    max_ok_us: AtomicU64,
    /// Connections established by clients.
    connects_ok: AtomicU64,
    /// Connect attempts that neither succeeded nor failed in time.
    connects_hung: AtomicU64,
    /// Failed calls, per error kind.
    failures: Mutex<BTreeMap<String, u64>>,
    /// Failed connect attempts, per error kind.
    connect_failures: Mutex<BTreeMap<String, u64>>,
    /// Chaos events done, per kind.
    chaos: Mutex<BTreeMap<&'static str, u64>>,
    /// Total time the server spent stopped by `pause` events.
    paused_ms: AtomicU64,
    /// Lanes that failed many calls in a row (see [`Streak`]).
    storms: AtomicU64,
    /// Calls that failed with `ConnectionClosed` while the status still
    /// said `Connected` (see [`status_lag`]).
    status_lags: AtomicU64,
    /// The longest such lag, in microseconds.
    max_status_lag_us: AtomicU64,
    /// Lags that lasted longer than [`STUCK_AFTER`].
    status_stuck: AtomicU64,
}

/// Adds one to `key` in `map`.
fn bump<K: Ord>(map: &Mutex<BTreeMap<K, u64>>, key: K) {
    *map.lock().unwrap().entry(key).or_insert(0) += 1;
}

/// One call being accounted for: counted as made when created and as
/// `aborted` when dropped without being classified (its task was killed).
struct CallGuard<'a> {
    /// Where the outcome is counted.
    stats: &'a Stats,
    /// Whether the outcome has been counted.
    done: bool,
}

impl<'a> CallGuard<'a> {
    /// Counts a call as made and in flight.
    fn begin(stats: &'a Stats) -> Self {
        stats.made.fetch_add(1, Ordering::Relaxed);
        stats.in_flight.fetch_add(1, Ordering::Relaxed);
        CallGuard { stats, done: false }
    }

    /// Counts the call's outcome in `counter`.
    fn finish(mut self, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.done = true;
    }
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.stats.aborted.fetch_add(1, Ordering::Relaxed);
            self.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A short name for an error, to count errors by kind.
fn error_kind(e: &RpcError) -> String {
    let mut s = format!("{e:?}");
    if s.len() > 100 {
        let mut cut = 100;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

// ---------------------------------------------------------------------------
// Shared state of the run
// ---------------------------------------------------------------------------

/// What every task of the parent shares.
struct Ctx {
    /// When the run started (timestamps of the log are relative to it).
    start: Instant,
    /// The server's address (the same across restarts).
    addr: String,
    /// Counters.
    stats: Stats,
    /// Set when clients must stop making new calls.
    stopping: AtomicBool,
    /// Source of unique call values.
    next_token: AtomicU64,
    /// Source of client ids.
    next_client: AtomicU64,
    /// The clients' call timeout.
    call_timeout: Duration,
    /// How long after it starts a call without an outcome counts as lost.
    lost_after: Duration,
    /// Calls in flight per connection.
    depth: usize,
    /// Last chaos event, for the log of lost and mismatched calls.
    last_chaos: Mutex<String>,
}

impl Ctx {
    /// Seconds since the start, for log lines.
    fn ts(&self) -> String {
        format!("[{:8.3}s]", self.start.elapsed().as_secs_f64())
    }

    /// Prints a timestamped log line.
    fn log(&self, msg: &str) {
        println!("{} {msg}", self.ts());
    }

    /// Whether clients must stop making calls.
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// A value no other call of this run carries.
    fn token(&self) -> u64 {
        // Multiplying by an odd constant is a bijection: still unique.
        self.next_token
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

// ---------------------------------------------------------------------------
// The server child
// ---------------------------------------------------------------------------

/// Runs as the server child: binds `listen`, prints the bound address,
/// obeys `cut` lines on stdin, exits when stdin closes.
async fn serve(listen: &str) -> ExitCode {
    let server = match Server::builder().expose(Soak).bind(listen).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("soak server: cannot bind {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", server.local_addr());
        let _ = out.flush();
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            match line {
                Ok(l) => {
                    if tx.send(l).is_err() {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        // Dropping `tx` ends the loop below: stdin closed, time to exit.
    });
    while let Some(cmd) = rx.recv().await {
        if cmd.trim() == "cut" {
            let peers = server.peers();
            for p in &peers {
                p.close_with(DisconnectReason::Closed);
            }
            println!("cut {} connections", peers.len());
        }
    }
    drop(server);
    ExitCode::SUCCESS
}

/// The server child process, seen from the parent.
struct ServerProcess {
    /// The child.
    child: Child,
    /// Its stdin: `cut` commands go there; closing it makes the child exit.
    stdin: Option<ChildStdin>,
    /// The address it listens on.
    addr: String,
}

impl ServerProcess {
    /// Starts a child listening on `listen` and waits for its address line.
    fn spawn(listen: &str, verbose: bool) -> std::io::Result<Self> {
        let mut cmd = Command::new(std::env::current_exe()?);
        cmd.args(["--serve", "--listen", listen]);
        if verbose {
            cmd.arg("-v");
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group: Ctrl-C reaches the parent only, which
            // then stops the child itself.
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let addr = line.trim().to_string();
        if addr.is_empty() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::other(format!(
                "the server child did not report an address for {listen}"
            )));
        }
        // Forward the child's later stdout lines.
        std::thread::spawn(move || {
            for line in out.lines() {
                match line {
                    Ok(l) => println!("           [server] {l}"),
                    Err(_) => break,
                }
            }
        });
        Ok(ServerProcess { child, stdin, addr })
    }

    /// The child's process id.
    fn pid(&self) -> libc::pid_t {
        self.child.id() as libc::pid_t
    }

    /// Sends `sig` to the child.
    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our
        // own child, not yet reaped while `self` lives.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }

    /// Asks the child to close every connection.
    fn cut(&mut self) -> std::io::Result<()> {
        match &mut self.stdin {
            Some(s) => {
                s.write_all(b"cut\n")?;
                s.flush()
            }
            None => Ok(()),
        }
    }

    /// Kills the child with SIGKILL (waking it first if it is stopped) and
    /// reaps it.
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.signal(libc::SIGCONT);
        let _ = self.child.wait();
        self.stdin = None;
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

/// Starts a server child on `listen`, retrying for a few seconds (a port or
/// socket path may take a moment to be free again).
async fn spawn_server(ctx: &Ctx, listen: &str, verbose: bool) -> Option<ServerProcess> {
    for attempt in 0..50 {
        let l = listen.to_string();
        match tokio::task::spawn_blocking(move || ServerProcess::spawn(&l, verbose)).await {
            Ok(Ok(p)) => return Some(p),
            Ok(Err(e)) => ctx.log(&format!("server start attempt {attempt} failed: {e}")),
            Err(e) => ctx.log(&format!("server start attempt {attempt} panicked: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

// ---------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------

/// One client position: the chaos may kill its task and start another.
#[derive(Default)]
struct Slot {
    /// The running client task.
    task: Mutex<Option<JoinHandle<()>>>,
    /// Its current connection, for client-side cuts.
    peer: Mutex<Option<Peer>>,
    /// Its client id.
    id: AtomicU64,
}

/// The operations a call can make.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// `echo(token)`.
    Echo,
    /// `add(token, b)`.
    Add(u64),
    /// `slow(ms, token)` with `ms` well within the timeout.
    Slow(u64),
    /// `slow(ms, token)` with `ms` beyond the timeout: must fail with a timeout.
    Overtime(u64),
}

/// Starts a fresh client task in `slot`.
fn start_client(ctx: &Arc<Ctx>, slot: &Arc<Slot>, rng: Rng) {
    let id = ctx.next_client.fetch_add(1, Ordering::Relaxed);
    slot.id.store(id, Ordering::Relaxed);
    let handle = tokio::spawn(client_task(ctx.clone(), slot.clone(), id, rng));
    *slot.task.lock().unwrap() = Some(handle);
}

/// A client: connects (again after a client-side cut), runs `depth` call
/// loops on the connection, until the run stops.
async fn client_task(ctx: Arc<Ctx>, slot: Arc<Slot>, id: u64, mut rng: Rng) {
    let handshake_bound = Duration::from_secs(10) + Duration::from_secs(5);
    while !ctx.stopping() {
        let connect = rpc_transport::connect(ctx.addr.as_str())
            .name(format!("soak-{id}"))
            .call_timeout(ctx.call_timeout)
            .reconnect(
                Backoff::default()
                    .initial(Duration::from_millis(50))
                    .max(Duration::from_secs(1)),
            );
        let peer = match tokio::time::timeout(handshake_bound, connect).await {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                bump(&ctx.stats.connect_failures, error_kind(&e));
                tokio::time::sleep(Duration::from_millis(rng.range(50, 200))).await;
                continue;
            }
            Err(_) => {
                ctx.stats.connects_hung.fetch_add(1, Ordering::Relaxed);
                ctx.log(&format!(
                    "HUNG CONNECT: client {id}: connect gave neither a peer nor an error within {handshake_bound:?}"
                ));
                continue;
            }
        };
        ctx.stats.connects_ok.fetch_add(1, Ordering::Relaxed);
        *slot.peer.lock().unwrap() = Some(peer.clone());
        let mut lanes = JoinSet::new();
        for lane in 0..ctx.depth {
            lanes.spawn(call_loop(ctx.clone(), peer.clone(), id, lane, rng.fork()));
        }
        while lanes.join_next().await.is_some() {}
        slot.peer.lock().unwrap().take();
        peer.close().await;
    }
}

/// After a call failed with `ConnectionClosed`: if the peer's connection is
/// closed while its status still says `Connected`, waits (polling every
/// millisecond, up to [`STUCK_AFTER`]) until the status moves on or a new
/// connection is up, and records how long that took. Without this wait a
/// lane would fail call after call at full speed in that window.
async fn status_lag(
    ctx: &Ctx,
    peer: &Peer,
    status: &watch::Receiver<Status>,
    client: u64,
    lane: usize,
) {
    let lagging = || *status.borrow() == Status::Connected && !peer.is_connected();
    if !lagging() {
        return;
    }
    let t0 = Instant::now();
    while lagging() && t0.elapsed() < STUCK_AFTER {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let lag = t0.elapsed();
    let stats = &ctx.stats;
    stats.status_lags.fetch_add(1, Ordering::Relaxed);
    stats
        .max_status_lag_us
        .fetch_max(lag.as_micros() as u64, Ordering::Relaxed);
    if lagging() {
        stats.status_stuck.fetch_add(1, Ordering::Relaxed);
        ctx.log(&format!(
            "STATUS STUCK: client {client} lane {lane}: connection {} closed but status still Connected after {lag:?} \
             (last chaos: {})",
            peer.connection_id(),
            ctx.last_chaos.lock().unwrap()
        ));
    } else if lag >= Duration::from_millis(5) {
        ctx.log(&format!(
            "status lag: client {client} lane {lane}: connection {} closed, status said Connected for {lag:?} more, then {:?}",
            peer.connection_id(),
            *status.borrow()
        ));
    }
}

/// The longest a closed connection may go on showing as `Connected` before
/// it counts as stuck.
const STUCK_AFTER: Duration = Duration::from_secs(2);

/// Consecutive failed calls of one lane, to spot a lane failing fast again
/// and again (a connection that is gone while the status says otherwise).
#[derive(Default)]
struct Streak {
    /// Failed calls in a row.
    count: u64,
    /// When the first of them failed.
    since: Option<Instant>,
    /// Whether this streak has been reported.
    reported: bool,
}

impl Streak {
    /// Calls in a row after which a streak is reported.
    const REPORT_AT: u64 = 200;

    /// Counts a failed call; reports the streak once it is long.
    fn failed(
        &mut self,
        ctx: &Ctx,
        peer: &Peer,
        client: u64,
        lane: usize,
        e: &RpcError,
        status: Status,
    ) {
        self.count += 1;
        let since = *self.since.get_or_insert_with(Instant::now);
        if self.count >= Self::REPORT_AT && !self.reported {
            self.reported = true;
            ctx.stats.storms.fetch_add(1, Ordering::Relaxed);
            ctx.log(&format!(
                "ERROR STORM: client {client} lane {lane}: {} failed calls in a row in {:?}, latest {e:?} \
                 with status {status:?}, connection {}, is_connected {} (last chaos: {})",
                self.count,
                since.elapsed(),
                peer.connection_id(),
                peer.is_connected(),
                ctx.last_chaos.lock().unwrap()
            ));
        }
    }

    /// A call succeeded: the streak ends (reported with its length if it was long).
    fn reset(&mut self, ctx: &Ctx, client: u64, lane: usize) {
        if self.reported {
            ctx.log(&format!(
                "error storm over: client {client} lane {lane}: {} failed calls in {:?}",
                self.count,
                self.since.map(|s| s.elapsed()).unwrap_or_default()
            ));
        }
        *self = Streak::default();
    }
}

/// Makes calls on `peer` one after another, checking every reply, until the
/// run stops or the peer is closed for good.
async fn call_loop(ctx: Arc<Ctx>, peer: Peer, client: u64, lane: usize, mut rng: Rng) {
    let stub = SoakClient::new(&peer);
    let mut status = peer.status();
    let overtime_ms = ctx.call_timeout.as_millis() as u64 + 1000;
    let mut streak = Streak::default();
    while !ctx.stopping() {
        if *status.borrow() == Status::Closed {
            break;
        }
        let token = ctx.token();
        let op = match rng.range(0, 99) {
            0..=69 => Op::Echo,
            70..=94 => Op::Add(rng.next_u64()),
            _ if rng.one_in(400) => Op::Overtime(overtime_ms),
            _ => Op::Slow(rng.range(0, 20)),
        };
        let expected = match op {
            Op::Add(b) => token.wrapping_add(b),
            _ => token,
        };
        let guard = CallGuard::begin(&ctx.stats);
        let started = Instant::now();
        let call = async {
            match op {
                Op::Echo => stub.echo(token).await,
                Op::Add(b) => stub.add(token, b).await,
                Op::Slow(ms) | Op::Overtime(ms) => stub.slow(ms, token).await,
            }
        };
        let outcome = tokio::time::timeout(ctx.lost_after, call).await;
        let took = started.elapsed();
        let stats = &ctx.stats;
        match outcome {
            Err(_) => {
                guard.finish(&stats.lost);
                ctx.log(&format!(
                    "LOST: client {client} lane {lane} {op:?} token {token:#x}: no outcome after {took:?} \
                     (connection {}, status {:?}; last chaos: {})",
                    peer.connection_id(),
                    *status.borrow(),
                    ctx.last_chaos.lock().unwrap()
                ));
            }
            Ok(Ok(v)) if v == expected => {
                if matches!(op, Op::Overtime(_)) {
                    stats.overtime_answered.fetch_add(1, Ordering::Relaxed);
                }
                stats
                    .max_ok_us
                    .fetch_max(took.as_micros() as u64, Ordering::Relaxed);
                guard.finish(&stats.ok);
                streak.reset(&ctx, client, lane);
            }
            Ok(Ok(v)) => {
                guard.finish(&stats.mismatched);
                ctx.log(&format!(
                    "MISMATCH: client {client} lane {lane} {op:?} token {token:#x}: expected {expected:#x}, got {v:#x} \
                     after {took:?} (connection {}; last chaos: {})",
                    peer.connection_id(),
                    ctx.last_chaos.lock().unwrap()
                ));
            }
            Ok(Err(e)) => {
                streak.failed(&ctx, &peer, client, lane, &e, *status.borrow());
                let mut kind = error_kind(&e);
                if matches!(op, Op::Overtime(_)) {
                    kind.push_str(
                        if matches!(
                            e,
                            RpcError::Timeout | RpcError::Remote(RemoteError::DeadlineExceeded)
                        ) {
                            " [overtime call: expected]"
                        } else {
                            " [overtime call]"
                        },
                    );
                }
                bump(&stats.failures, kind);
                guard.finish(&stats.failed);
                if matches!(e, RpcError::ConnectionClosed(_)) {
                    status_lag(&ctx, &peer, &status, client, lane).await;
                }
                if e == RpcError::NotConnected {
                    // Reconnecting: wait for a connection instead of spinning.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(2),
                        status.wait_for(|s| *s != Status::Reconnecting),
                    )
                    .await;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Chaos
// ---------------------------------------------------------------------------

/// The kinds of chaos event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chaos {
    /// Abort a client task (and its calls in flight), start a fresh one.
    KillClient,
    /// Close a client's connection from the client side while it calls.
    ClientCut,
    /// Make the server close every connection.
    ServerCut,
    /// SIGSTOP the server for 0.1 to 3 s, then SIGCONT.
    Pause,
    /// SIGKILL the server and restart it on the same address.
    KillServer,
}

impl Chaos {
    /// The name used in the log and the summary.
    fn name(self) -> &'static str {
        match self {
            Chaos::KillClient => "kill-client",
            Chaos::ClientCut => "client-cut",
            Chaos::ServerCut => "server-cut",
            Chaos::Pause => "pause",
            Chaos::KillServer => "kill-server",
        }
    }
}

/// Does a chaos event every so often until `stop` turns true. Returns
/// `false` when the server could not be restarted.
#[allow(clippy::too_many_arguments)]
async fn chaos_loop(
    ctx: Arc<Ctx>,
    server: Arc<tokio::sync::Mutex<Option<ServerProcess>>>,
    slots: Vec<Arc<Slot>>,
    kinds: Vec<Chaos>,
    mean_ms: u64,
    verbose: bool,
    mut rng: Rng,
    mut stop: watch::Receiver<bool>,
) -> bool {
    if kinds.is_empty() {
        return true;
    }
    loop {
        let wait = Duration::from_millis(rng.range(mean_ms / 5, mean_ms * 9 / 5));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.wait_for(|s| *s) => return true,
        }
        let kind = kinds[rng.range(0, kinds.len() as u64 - 1) as usize];
        let what = match kind {
            Chaos::KillClient => {
                let i = rng.range(0, slots.len() as u64 - 1) as usize;
                let slot = &slots[i];
                let old = slot.id.load(Ordering::Relaxed);
                slot.peer.lock().unwrap().take();
                if let Some(t) = slot.task.lock().unwrap().take() {
                    t.abort();
                }
                start_client(&ctx, slot, rng.fork());
                format!(
                    "kill-client: aborted client {old}, started client {}",
                    slot.id.load(Ordering::Relaxed)
                )
            }
            Chaos::ClientCut => {
                let i = rng.range(0, slots.len() as u64 - 1) as usize;
                let slot = &slots[i];
                let peer = slot.peer.lock().unwrap().clone();
                match peer {
                    Some(p) => {
                        let conn = p.connection_id();
                        p.close_with(DisconnectReason::Closed);
                        format!(
                            "client-cut: client {} closed connection {conn}",
                            slot.id.load(Ordering::Relaxed)
                        )
                    }
                    None => format!(
                        "client-cut: client {} has no connection right now",
                        slot.id.load(Ordering::Relaxed)
                    ),
                }
            }
            Chaos::ServerCut => {
                let mut guard = server.lock().await;
                match guard.as_mut().map(ServerProcess::cut) {
                    Some(Ok(())) => "server-cut: told the server to close every connection".into(),
                    Some(Err(e)) => format!("server-cut: could not tell the server: {e}"),
                    None => "server-cut: no server".into(),
                }
            }
            Chaos::Pause => {
                let ms = rng.range(100, 3000);
                let guard = server.lock().await;
                if let Some(p) = guard.as_ref() {
                    ctx.log(&format!(
                        "chaos pause: SIGSTOP server pid {} for {ms} ms",
                        p.pid()
                    ));
                    *ctx.last_chaos.lock().unwrap() = format!("{} pause {ms} ms (start)", ctx.ts());
                    p.signal(libc::SIGSTOP);
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    p.signal(libc::SIGCONT);
                    ctx.stats.paused_ms.fetch_add(ms, Ordering::Relaxed);
                }
                format!("pause: SIGCONT after {ms} ms")
            }
            Chaos::KillServer => {
                let down_ms = rng.range(0, 1000);
                let mut guard = server.lock().await;
                let old_pid = guard.as_ref().map(|p| p.pid()).unwrap_or(0);
                if let Some(mut p) = guard.take() {
                    p.kill();
                }
                ctx.log(&format!(
                    "chaos kill-server: SIGKILL pid {old_pid}, restarting in {down_ms} ms"
                ));
                *ctx.last_chaos.lock().unwrap() = format!("{} kill-server (start)", ctx.ts());
                tokio::time::sleep(Duration::from_millis(down_ms)).await;
                match spawn_server(&ctx, &ctx.addr, verbose).await {
                    Some(p) => {
                        let msg =
                            format!("kill-server: restarted as pid {} on {}", p.pid(), p.addr);
                        *guard = Some(p);
                        msg
                    }
                    None => {
                        ctx.log("chaos kill-server: could not restart the server; ending the run");
                        bump(&ctx.stats.chaos, kind.name());
                        return false;
                    }
                }
            }
        };
        bump(&ctx.stats.chaos, kind.name());
        ctx.log(&format!("chaos {what}"));
        *ctx.last_chaos.lock().unwrap() = format!("{} {what}", ctx.ts());
    }
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

/// Removes the Unix socket's directory when dropped.
struct TempDir(Option<PathBuf>);

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Parses the arguments and runs either the server child or the soak run.
fn main() -> ExitCode {
    let args = Args::parse();
    if args.verbose {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter("rpc_core=debug,rpc_transport=debug")
            .init();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("soak: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.serve {
        let listen = args
            .listen
            .clone()
            .unwrap_or_else(|| "tcp://127.0.0.1:0".into());
        return rt.block_on(serve(&listen));
    }
    rt.block_on(run(args))
}

/// The soak run: server child, clients, chaos, summary.
async fn run(args: Args) -> ExitCode {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let clients = args.clients.max(1);
    let depth = args.depth.max(1);
    let mut kinds = Vec::new();
    if !args.no_chaos {
        for (off, kind) in [
            (args.no_kill_client, Chaos::KillClient),
            (args.no_client_cut, Chaos::ClientCut),
            (args.no_server_cut, Chaos::ServerCut),
            (args.no_pause, Chaos::Pause),
            (args.no_kill_server, Chaos::KillServer),
        ] {
            if !off {
                kinds.push(kind);
            }
        }
    }
    let kind_names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    println!(
        "soak: seed {seed}, transport {:?}, {clients} clients x {depth} in flight, {} s, call timeout {} ms, chaos every ~{} ms: [{}]",
        args.transport,
        args.seconds,
        args.call_timeout_ms,
        args.chaos_ms,
        kind_names.join(", ")
    );
    println!("soak: repeat with --seed {seed}");

    let mut tmp = TempDir(None);
    let listen = match args.transport {
        Transport::Tcp => "tcp://127.0.0.1:0".to_string(),
        Transport::Unix => {
            let dir = std::env::temp_dir().join(format!("rpc-soak-{}", std::process::id()));
            if let Err(e) = std::fs::create_dir_all(&dir) {
                eprintln!("soak: cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
            let path = dir.join("soak.sock");
            tmp.0 = Some(dir);
            format!("unix://{}", path.display())
        }
    };

    let start = Instant::now();
    // A context for logging before the address is known.
    let boot = Ctx {
        start,
        addr: listen.clone(),
        stats: Stats::default(),
        stopping: AtomicBool::new(false),
        next_token: AtomicU64::new(1),
        next_client: AtomicU64::new(1),
        call_timeout: Duration::from_millis(args.call_timeout_ms),
        lost_after: Duration::from_millis(args.call_timeout_ms + args.lost_grace_ms),
        depth,
        last_chaos: Mutex::new("none".into()),
    };
    let Some(first) = spawn_server(&boot, &listen, args.verbose).await else {
        eprintln!("soak: the server child did not start");
        return ExitCode::FAILURE;
    };
    let ctx = Arc::new(Ctx {
        addr: first.addr.clone(),
        ..boot
    });
    ctx.log(&format!(
        "server pid {} listening on {}",
        first.pid(),
        first.addr
    ));
    let server = Arc::new(tokio::sync::Mutex::new(Some(first)));

    let mut rng = Rng::new(seed);
    let slots: Vec<Arc<Slot>> = (0..clients).map(|_| Arc::new(Slot::default())).collect();
    for slot in &slots {
        start_client(&ctx, slot, rng.fork());
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let chaos = tokio::spawn(chaos_loop(
        ctx.clone(),
        server.clone(),
        slots.clone(),
        kinds,
        args.chaos_ms.max(10),
        args.verbose,
        rng.fork(),
        stop_rx,
    ));

    let mut interrupted = false;
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs(args.seconds)) => {}
        _ = tokio::signal::ctrl_c() => {
            interrupted = true;
            ctx.log("Ctrl-C: stopping early");
        }
    }
    // Stop the chaos first (a pause in progress ends with SIGCONT, a restart
    // completes), then let the clients finish their calls in flight.
    let _ = stop_tx.send(true);
    let restarted = chaos.await.unwrap_or(false);
    ctx.stopping.store(true, Ordering::Relaxed);
    let calls_ended_at = ctx.start.elapsed();
    ctx.log("stopping: draining calls in flight");
    let drain_deadline = Instant::now() + ctx.lost_after + Duration::from_secs(20);
    for slot in &slots {
        let task = slot.task.lock().unwrap().take();
        if let Some(mut t) = task {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, &mut t).await.is_err() {
                ctx.log(&format!(
                    "client {} did not stop in time; aborting it",
                    slot.id.load(Ordering::Relaxed)
                ));
                t.abort();
            }
        }
    }
    // Aborted tasks count their calls when they are dropped, shortly after.
    for _ in 0..100 {
        if ctx.stats.in_flight.load(Ordering::Relaxed) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if let Some(mut p) = server.lock().await.take() {
        p.kill();
    }
    drop(tmp);

    let failed_run = print_summary(&ctx, calls_ended_at, interrupted, restarted);
    if failed_run {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Prints the summary table; returns whether the run failed (lost or
/// mismatched calls, hung connects, or a server that could not restart).
fn print_summary(ctx: &Ctx, calls_ended_at: Duration, interrupted: bool, restarted: bool) -> bool {
    let s = &ctx.stats;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (made, ok, failed, lost, mismatched, aborted) = (
        get(&s.made),
        get(&s.ok),
        get(&s.failed),
        get(&s.lost),
        get(&s.mismatched),
        get(&s.aborted),
    );
    let in_flight = get(&s.in_flight);
    let hung = get(&s.connects_hung);
    println!();
    println!("==================== soak summary ====================");
    println!("calls made            {made:>12}");
    println!("  ok                  {ok:>12}");
    println!("  failed              {failed:>12}");
    for (kind, n) in s.failures.lock().unwrap().iter() {
        println!("      {n:>10}  {kind}");
    }
    println!("  lost                {lost:>12}");
    println!("  mismatched          {mismatched:>12}");
    println!("  aborted (client killed mid-call) {aborted:>5}");
    if in_flight != 0 {
        println!("  unaccounted         {in_flight:>12}");
    }
    println!(
        "slowest ok call       {:>12.3} s",
        get(&s.max_ok_us) as f64 / 1e6
    );
    println!(
        "overtime calls answered instead of timing out {}",
        get(&s.overtime_answered)
    );
    println!("error storms          {:>12}", get(&s.storms));
    println!(
        "status lags           {:>12} (ConnectionClosed while the status still said Connected; longest {:.3} ms, stuck > {:?}: {})",
        get(&s.status_lags),
        get(&s.max_status_lag_us) as f64 / 1e3,
        STUCK_AFTER,
        get(&s.status_stuck)
    );
    println!("connects ok           {:>12}", get(&s.connects_ok));
    println!("connects hung         {hung:>12}");
    let cf = s.connect_failures.lock().unwrap();
    let cf_total: u64 = cf.values().sum();
    println!("connects failed       {cf_total:>12}");
    for (kind, n) in cf.iter() {
        println!("      {n:>10}  {kind}");
    }
    println!("chaos events");
    let chaos = s.chaos.lock().unwrap();
    for name in [
        "kill-client",
        "client-cut",
        "server-cut",
        "pause",
        "kill-server",
    ] {
        println!(
            "      {:>10}  {name}",
            chaos.get(name).copied().unwrap_or(0)
        );
    }
    println!(
        "server paused in all  {:>12.3} s",
        get(&s.paused_ms) as f64 / 1e3
    );
    println!(
        "elapsed               {:>12.3} s (calls for {:.3} s{})",
        ctx.start.elapsed().as_secs_f64(),
        calls_ended_at.as_secs_f64(),
        if interrupted { ", interrupted" } else { "" }
    );
    let accounted = ok + failed + lost + mismatched + aborted + in_flight;
    if accounted != made {
        println!("ACCOUNTING ERROR: {made} made but {accounted} accounted for");
    }
    let stuck = get(&s.status_stuck);
    let bad =
        lost > 0 || mismatched > 0 || hung > 0 || stuck > 0 || !restarted || accounted != made;
    println!(
        "verdict               {}",
        if bad { "FAIL" } else { "PASS" }
    );
    bad
}
