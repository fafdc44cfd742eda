//! The shared harness: the trait each implementation fills in, the server
//! child process, the scenarios and the measurement of one run.
//!
//! One run = one implementation × one scenario × one transport. It starts a
//! fresh server process (this binary re-executed as `rpc-bench serve`),
//! connects from a fresh client runtime in this process, runs closed-loop
//! callers (or stream readers, which restart each stream as it ends) for a
//! warm-up and then for the measured window, and reads the CPU time of both
//! processes at the edges of that window.
//!
//! The stream scenarios need more than [`Client`]: an implementation with
//! streams also implements [`StreamClient`]; one without (tarpc) is not run
//! in them.

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::sys;

/// Any error of a run, as text or as a boxed error.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Where a server listens: `tcp://ip:port`, `unix:///path`, or
/// `tls://ip:port` (TLS over TCP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix socket path.
    Unix(PathBuf),
    /// TLS over TCP.
    Tls {
        /// The TCP socket address.
        addr: SocketAddr,
        /// The CA certificate (DER) the client trusts: the one the server
        /// process made (see [`crate::tls`]). Empty on the server side.
        ca: Vec<u8>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
            Endpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            Endpoint::Tls { addr, .. } => write!(f, "tls://{addr}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = BoxError;

    fn from_str(s: &str) -> Result<Self, BoxError> {
        if let Some(addr) = s.strip_prefix("tcp://") {
            Ok(Endpoint::Tcp(addr.parse()?))
        } else if let Some(path) = s.strip_prefix("unix://") {
            Ok(Endpoint::Unix(PathBuf::from(path)))
        } else if let Some(addr) = s.strip_prefix("tls://") {
            Ok(Endpoint::Tls {
                addr: addr.parse()?,
                ca: Vec::new(),
            })
        } else {
            Err(
                format!("not an endpoint (tcp://ip:port, unix:///path or tls://ip:port): {s:?}")
                    .into(),
            )
        }
    }
}

/// The socket kind a run uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Transport {
    /// TCP over loopback (127.0.0.1).
    Tcp,
    /// A Unix stream socket in the temp directory.
    Unix,
    /// TLS 1.3 over TCP loopback (rustls with ring), with a certificate the
    /// server makes at start.
    Tls,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Unix => "unix",
            Transport::Tls => "tls",
        })
    }
}

/// A client connection of one implementation. Clones share the connection,
/// and calls may be in flight concurrently from many tasks.
pub(crate) trait Client: Clone + Send + Sync + 'static {
    /// Calls `add(a, b)` remotely.
    fn add(&self, a: i32, b: i32) -> impl Future<Output = Result<i32, BoxError>> + Send;
    /// Calls `echo(data)` remotely.
    fn echo(&self, data: Vec<u8>) -> impl Future<Output = Result<Vec<u8>, BoxError>> + Send;
}

/// One implementation under test: how to serve the service and how to
/// connect to it.
pub(crate) trait Backend {
    /// Its name in tables and on the command line.
    const NAME: &'static str;
    /// Its client connection.
    type Client: Client;

    /// Binds a server on `listen` (port 0 for TCP). Returns the bound
    /// address and a future that serves until the process exits.
    fn bind(
        listen: &Endpoint,
    ) -> impl Future<Output = Result<(Endpoint, BoxFuture<'static, ()>), BoxError>>;

    /// Opens one client connection to `addr`.
    fn connect(addr: &Endpoint) -> impl Future<Output = Result<Self::Client, BoxError>>;
}

/// A client connection of an implementation that has streams (tarpc has
/// none). Besides `add` and `echo`, its server has
/// `chunks(n: u32, size: u32)`, which returns a stream of `n` items of
/// `size` bytes each (the bytes of [`item_bytes`]).
pub(crate) trait StreamClient: Client {
    /// Calls `chunks(n, size)` and reads the stream it returns until it
    /// ends, or until `ctl` says stop (then it may return early). Counts
    /// each item with [`Control::count_item`] and checks its length.
    /// Returns how many items it read.
    fn read_stream(
        &self,
        n: u32,
        size: u32,
        ctl: &Arc<Control>,
    ) -> impl Future<Output = Result<u64, BoxError>> + Send;
}

/// The bytes of one stream item of `size` bytes: every implementation sends
/// the same ones.
pub(crate) fn item_bytes(size: usize) -> Vec<u8> {
    (0..size).map(|i| i as u8).collect()
}

/// Checks that a stream item read has the length asked for.
///
/// # Errors
/// When it does not.
pub(crate) fn check_item(len: usize, size: u32) -> Result<(), BoxError> {
    if len == size as usize {
        Ok(())
    } else {
        Err(format!("a stream item of {len} bytes, {size} expected").into())
    }
}

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Scenario {
    /// Sequential `add` round trips on one connection.
    #[value(name = "seq-add")]
    SeqAdd,
    /// 64 `add` calls in flight on one connection.
    #[value(name = "par-add")]
    ParAdd,
    /// 32 `echo` calls of 1 KiB in flight on one connection.
    #[value(name = "echo-1k")]
    Echo1k,
    /// 16 connections, 16 `add` calls in flight on each.
    #[value(name = "conns-16")]
    Conns16,
    /// One stream of 1 KiB items from the server on one connection, a new
    /// stream as soon as one ends.
    #[value(name = "stream-1k")]
    Stream1k,
    /// 64 concurrent streams of 64-byte items on one connection.
    #[value(name = "streams-64x64")]
    Streams64x64,
    /// Sequential `add` calls on a connection that carries a bulk stream,
    /// against the same calls on the same connection idle.
    #[value(name = "calls-under-stream")]
    CallsUnderStream,
}

/// What a scenario measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Calls/s and call latency of closed-loop callers.
    Calls,
    /// Items/s and bytes/s of streams read from the server.
    Streams,
    /// Call latency with and without a bulk stream on the connection.
    CallsUnderStream,
}

/// Items of the bulk stream in `calls-under-stream`, bytes.
pub(crate) const BULK_ITEM: u32 = 1024;

impl Scenario {
    /// Every scenario, in report order.
    pub(crate) const ALL: [Scenario; 7] = [
        Scenario::SeqAdd,
        Scenario::ParAdd,
        Scenario::Echo1k,
        Scenario::Conns16,
        Scenario::Stream1k,
        Scenario::Streams64x64,
        Scenario::CallsUnderStream,
    ];

    /// What it measures.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Scenario::SeqAdd | Scenario::ParAdd | Scenario::Echo1k | Scenario::Conns16 => {
                Kind::Calls
            }
            Scenario::Stream1k | Scenario::Streams64x64 => Kind::Streams,
            Scenario::CallsUnderStream => Kind::CallsUnderStream,
        }
    }

    /// How many measured windows one run has (`calls-under-stream` has
    /// one without the stream and one with it).
    pub(crate) fn windows(self) -> u32 {
        match self.kind() {
            Kind::CallsUnderStream => 2,
            _ => 1,
        }
    }

    /// Number of connections.
    fn connections(self) -> usize {
        match self {
            Scenario::Conns16 => 16,
            _ => 1,
        }
    }

    /// Calls in flight on each connection (closed-loop callers).
    fn in_flight(self) -> usize {
        match self {
            Scenario::ParAdd => 64,
            Scenario::Echo1k => 32,
            Scenario::Conns16 => 16,
            _ => 1,
        }
    }

    /// Payload of each echo call, or `None` for `add`.
    fn echo_len(self) -> Option<usize> {
        match self {
            Scenario::Echo1k => Some(1024),
            _ => None,
        }
    }

    /// Streams read at once on the connection (each restarted as soon as
    /// it ends), the bytes of each item, and the items of each stream.
    fn streams(self) -> (usize, u32, u32) {
        match self {
            // 16 MiB per stream: a restart (one round trip) every 16 Ki items.
            Scenario::Stream1k => (1, 1024, 16 * 1024),
            Scenario::Streams64x64 => (64, 64, 4096),
            Scenario::CallsUnderStream => (1, BULK_ITEM, (16 << 20) / BULK_ITEM),
            _ => (0, 0, 0),
        }
    }

    /// Its name on the command line and in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::SeqAdd => "seq-add",
            Scenario::ParAdd => "par-add",
            Scenario::Echo1k => "echo-1k",
            Scenario::Conns16 => "conns-16",
            Scenario::Stream1k => "stream-1k",
            Scenario::Streams64x64 => "streams-64x64",
            Scenario::CallsUnderStream => "calls-under-stream",
        }
    }

    /// One line saying what it does.
    pub(crate) fn describe(self) -> String {
        let (streams, size, n) = self.streams();
        match self.kind() {
            Kind::Calls => {
                let call = match self.echo_len() {
                    Some(n) => format!("echo({n} B)"),
                    None => "add".to_owned(),
                };
                format!(
                    "{call}, {} connection(s) x {} in flight",
                    self.connections(),
                    self.in_flight()
                )
            }
            Kind::Streams => format!(
                "{streams} stream(s) of {size} B items from the server on 1 connection, \
                 {n} items each, restarted when done"
            ),
            Kind::CallsUnderStream => format!(
                "sequential add on 1 connection, idle and then beside a stream of {} KiB items",
                size / 1024
            ),
        }
    }
}

/// Knobs shared by every run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunConfig {
    /// Runtime worker threads on each side (1 = a current-thread runtime).
    pub(crate) threads: usize,
    /// Load before the measured window.
    pub(crate) warmup: Duration,
    /// The measured window.
    pub(crate) duration: Duration,
}

/// Median and 99th-percentile latency of the calls of a window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Latency {
    /// Median, microseconds.
    pub(crate) p50_us: f64,
    /// 99th percentile, microseconds.
    pub(crate) p99_us: f64,
}

impl Latency {
    /// The percentiles of `latencies` (nanoseconds; sorted here).
    ///
    /// # Errors
    /// When there are none.
    fn of(mut latencies: Vec<u32>) -> Result<Self, BoxError> {
        if latencies.is_empty() {
            return Err("no call completed in the measured window".into());
        }
        latencies.sort_unstable();
        let pct = |p: f64| {
            let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
            f64::from(latencies[i]) / 1000.0
        };
        Ok(Latency {
            p50_us: pct(0.50),
            p99_us: pct(0.99),
        })
    }
}

/// What one run measured, over the measured window only.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    /// What completed: calls, or in the [`Kind::Streams`] scenarios stream
    /// items received.
    pub(crate) ops: u64,
    /// Bytes of the stream items received (item payload, not frames); 0
    /// in the [`Kind::Calls`] scenarios.
    pub(crate) stream_bytes: u64,
    /// Wall-clock length of the window.
    pub(crate) elapsed: Duration,
    /// CPU time of the client process (user + system).
    pub(crate) client_cpu_us: u64,
    /// CPU time of the server process (user + system).
    pub(crate) server_cpu_us: u64,
    /// Latency of the calls in the window; `None` when no calls were
    /// made ([`Kind::Streams`]).
    pub(crate) latency: Option<Latency>,
    /// [`Kind::CallsUnderStream`]: latency of the same calls on the same
    /// connection while it carried no stream.
    pub(crate) idle: Option<Latency>,
}

impl Measurement {
    /// Completed operations (calls or items) per second.
    pub(crate) fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// Stream payload, megabytes (10^6 bytes) per second.
    pub(crate) fn stream_mb_per_sec(&self) -> f64 {
        self.stream_bytes as f64 / 1e6 / self.elapsed.as_secs_f64()
    }

    /// Client CPU microseconds per operation.
    pub(crate) fn client_us_per_op(&self) -> f64 {
        self.client_cpu_us as f64 / self.ops.max(1) as f64
    }

    /// Server CPU microseconds per operation.
    pub(crate) fn server_us_per_op(&self) -> f64 {
        self.server_cpu_us as f64 / self.ops.max(1) as f64
    }
}

/// Whether `threads == 1` still means a multi-threaded runtime (with one
/// worker), set once from the command line (`--multi-thread`) and passed on
/// to the server process.
pub(crate) static MULTI_THREAD: AtomicBool = AtomicBool::new(false);

/// Builds a runtime with `threads` workers; 1 means a current-thread runtime
/// (everything on the calling thread) unless [`MULTI_THREAD`] is set.
///
/// # Errors
/// When the runtime cannot be created.
pub(crate) fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 && !MULTI_THREAD.load(Ordering::Relaxed) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()
    }
}

/// Runs the hidden `serve` subcommand: binds, prints the bound address as the
/// first line on stdout, and serves until stdin reaches end of file (the
/// parent closed it or died).
///
/// # Errors
/// When the runtime cannot start or the bind fails.
pub(crate) fn serve<B: Backend>(listen: &Endpoint, threads: usize) -> Result<(), BoxError> {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
    let rt = runtime(threads)?;
    rt.block_on(async {
        let (local, serving) = B::bind(listen).await?;
        println!("{local}");
        if let Endpoint::Tls { .. } = local {
            // What the client must trust, on the next line.
            println!("{}", crate::tls::ca_line()?);
        }
        serving.await;
        Ok(())
    })
}

/// A server child process: this binary re-executed as `serve`.
pub(crate) struct ServerProcess {
    /// The child; its stdin is our end of the lifeline.
    child: Child,
    /// Where it listens.
    addr: Endpoint,
    /// The Unix socket file to remove afterwards.
    unix_path: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts a server of implementation `impl_name` on a fresh loopback port
    /// or Unix socket path and waits until it listens.
    ///
    /// # Errors
    /// When the child cannot be started or does not report an address.
    pub(crate) fn spawn(
        impl_name: &str,
        transport: Transport,
        threads: usize,
    ) -> Result<Self, BoxError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let (listen, unix_path) = match transport {
            Transport::Tcp => (Endpoint::Tcp(([127, 0, 0, 1], 0).into()), None),
            Transport::Tls => (
                Endpoint::Tls {
                    addr: ([127, 0, 0, 1], 0).into(),
                    ca: Vec::new(),
                },
                None,
            ),
            Transport::Unix => {
                let n = SEQ.fetch_add(1, Ordering::Relaxed);
                let path = std::env::temp_dir().join(format!(
                    "rpc-bench-{}-{impl_name}-{n}.sock",
                    std::process::id()
                ));
                let _ = std::fs::remove_file(&path);
                (Endpoint::Unix(path.clone()), Some(path))
            }
        };
        let mut child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .args(["--impl", impl_name])
            .args(["--listen", &listen.to_string()])
            .args(["--threads", &threads.to_string()])
            .args(
                MULTI_THREAD
                    .load(Ordering::Relaxed)
                    .then_some("--multi-thread"),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut line = String::new();
        let mut ca_line = String::new();
        if let Some(out) = child.stdout.take() {
            let mut out = BufReader::new(out);
            out.read_line(&mut line)?;
            if transport == Transport::Tls {
                out.read_line(&mut ca_line)?;
            }
        }
        let parsed = line.trim().parse().and_then(|addr| match addr {
            Endpoint::Tls { addr, .. } => Ok(Endpoint::Tls {
                addr,
                ca: crate::tls::parse_ca_line(&ca_line)?,
            }),
            other => Ok(other),
        });
        let addr = match parsed {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{impl_name} server did not start ({e})").into());
            }
        };
        Ok(Self {
            child,
            addr,
            unix_path,
        })
    }

    /// The child's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> &Endpoint {
        &self.addr
    }

    /// Kills it at once (SIGKILL): a backend that dies.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing its stdin tells the child to exit; give it a moment, then
        // kill it.
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        if let Some(path) = &self.unix_path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Flags and counters shared by the callers and stream readers of one run.
#[derive(Default)]
pub(crate) struct Control {
    /// Set while the measured window is open: completed calls and items
    /// received count.
    recording: AtomicBool,
    /// Set when the callers and readers should finish and return.
    stop: AtomicBool,
    /// Stream items received in the window.
    items: AtomicU64,
    /// Bytes of the stream items received in the window.
    item_bytes: AtomicU64,
}

impl Control {
    /// Counts one stream item of `len` bytes, if the window is open.
    pub(crate) fn count_item(&self, len: usize) {
        if self.recording.load(Ordering::Relaxed) {
            self.items.fetch_add(1, Ordering::Relaxed);
            self.item_bytes.fetch_add(len as u64, Ordering::Relaxed);
        }
    }

    /// Whether the run is over.
    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// One closed-loop caller: calls back to back until told to stop. Returns
/// the latencies (ns) of the calls that completed inside the window.
async fn caller<C: Client>(
    client: C,
    echo_len: Option<usize>,
    seed: i32,
    ctl: Arc<Control>,
) -> Result<Vec<u32>, BoxError> {
    let payload = echo_len.map(|n| (0..n).map(|i| i as u8).collect::<Vec<u8>>());
    let mut latencies = Vec::new();
    let mut a = seed;
    while !ctl.stopped() {
        let t0 = Instant::now();
        match &payload {
            None => {
                let sum = client.add(a, 7).await?;
                if sum != a.wrapping_add(7) {
                    return Err(format!("add({a}, 7) returned {sum}").into());
                }
            }
            Some(data) => {
                let back = client.echo(data.clone()).await?;
                if back.len() != data.len() {
                    return Err("echo returned a different payload".into());
                }
            }
        }
        if ctl.recording.load(Ordering::Relaxed) {
            let ns = t0.elapsed().as_nanos();
            latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
        }
        a = a.wrapping_add(1);
    }
    Ok(latencies)
}

/// Runs `scenario` against implementation `B` over `transport`: a fresh
/// server process, a fresh client runtime, warm-up, measured window.
///
/// # Errors
/// When the server does not start, a connection fails, or any call fails or
/// returns a wrong value.
pub(crate) fn run_case<B: Backend>(
    scenario: Scenario,
    transport: Transport,
    cfg: RunConfig,
) -> Result<Measurement, BoxError> {
    let server = ServerProcess::spawn(B::NAME, transport, cfg.threads)?;
    let rt = runtime(cfg.threads)?;
    let result = rt.block_on(measure::<B>(scenario, &server, cfg));
    // Drop the client side (its connections) before the server goes.
    drop(rt);
    drop(server);
    result
}

/// The async part of [`run_case`].
async fn measure<B: Backend>(
    scenario: Scenario,
    server: &ServerProcess,
    cfg: RunConfig,
) -> Result<Measurement, BoxError> {
    let mut clients = Vec::with_capacity(scenario.connections());
    for _ in 0..scenario.connections() {
        clients.push(B::connect(server.addr()).await?);
    }
    let ctl = Arc::new(Control::default());
    let mut tasks = Vec::new();
    for (ci, client) in clients.iter().enumerate() {
        for k in 0..scenario.in_flight() {
            let seed = (ci * 1_000_000 + k * 10_000) as i32;
            tasks.push(tokio::spawn(caller(
                client.clone(),
                scenario.echo_len(),
                seed,
                ctl.clone(),
            )));
        }
    }
    drop(clients);

    let window = Window::run(server, cfg, &ctl).await?;
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(finish(task).await?);
    }
    Ok(window.measurement(latencies.len() as u64, Some(Latency::of(latencies)?), &ctl))
}

/// The edges of one measured window.
struct Window {
    /// Its wall-clock length.
    elapsed: Duration,
    /// CPU time of this process in it.
    client_cpu_us: u64,
    /// CPU time of the server process in it.
    server_cpu_us: u64,
}

impl Window {
    /// With the load already running: waits out the warm-up, opens the
    /// window (`ctl` records), reads both processes' CPU time at its
    /// edges, then tells the load to stop.
    async fn run(
        server: &ServerProcess,
        cfg: RunConfig,
        ctl: &Control,
    ) -> Result<Window, BoxError> {
        tokio::time::sleep(cfg.warmup).await;
        let client0 = sys::self_cpu_us();
        let server0 = sys::proc_cpu_us(server.pid())?;
        let t0 = Instant::now();
        ctl.recording.store(true, Ordering::Relaxed);
        tokio::time::sleep(cfg.duration).await;
        ctl.recording.store(false, Ordering::Relaxed);
        let elapsed = t0.elapsed();
        let client1 = sys::self_cpu_us();
        let server1 = sys::proc_cpu_us(server.pid())?;
        ctl.stop.store(true, Ordering::Relaxed);
        Ok(Window {
            elapsed,
            client_cpu_us: client1.saturating_sub(client0),
            server_cpu_us: server1.saturating_sub(server0),
        })
    }

    /// The measurement of this window: `ops` operations, the calls'
    /// `latency`, and the stream items `ctl` counted.
    fn measurement(&self, ops: u64, latency: Option<Latency>, ctl: &Control) -> Measurement {
        Measurement {
            ops,
            stream_bytes: ctl.item_bytes.load(Ordering::Relaxed),
            elapsed: self.elapsed,
            client_cpu_us: self.client_cpu_us,
            server_cpu_us: self.server_cpu_us,
            latency,
            idle: None,
        }
    }
}

/// Waits for a caller or reader told to stop, and returns what it returned.
///
/// # Errors
/// When it failed, panicked, or did not finish within 10 s.
async fn finish<T>(task: tokio::task::JoinHandle<Result<T, BoxError>>) -> Result<T, BoxError> {
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .map_err(|_| "a caller or stream reader did not finish within 10 s after stop")??
}

/// One stream reader: reads stream after stream of `n` items of `size`
/// bytes until told to stop.
async fn stream_reader<C: StreamClient>(
    client: C,
    n: u32,
    size: u32,
    ctl: Arc<Control>,
) -> Result<(), BoxError> {
    while !ctl.stopped() {
        let read = client.read_stream(n, size, &ctl).await?;
        if read != u64::from(n) && !ctl.stopped() {
            return Err(format!("a stream of {n} items ended after {read}").into());
        }
    }
    Ok(())
}

/// Runs a [`Kind::Streams`] or [`Kind::CallsUnderStream`] scenario against
/// implementation `B` over `transport`, as [`run_case`] does the others.
///
/// # Errors
/// When the server does not start, a connection fails, a stream or a call
/// fails, or an item or a reply is wrong.
pub(crate) fn run_stream_case<B: Backend>(
    scenario: Scenario,
    transport: Transport,
    cfg: RunConfig,
) -> Result<Measurement, BoxError>
where
    B::Client: StreamClient,
{
    let server = ServerProcess::spawn(B::NAME, transport, cfg.threads)?;
    let rt = runtime(cfg.threads)?;
    let result = rt.block_on(async {
        match scenario.kind() {
            Kind::CallsUnderStream => measure_calls_under_stream::<B>(scenario, &server, cfg).await,
            _ => measure_streams::<B>(scenario, &server, cfg).await,
        }
    });
    drop(rt);
    drop(server);
    result
}

/// The async part of [`run_stream_case`] for [`Kind::Streams`]: the
/// scenario's streams on one connection, each restarted when it ends.
async fn measure_streams<B: Backend>(
    scenario: Scenario,
    server: &ServerProcess,
    cfg: RunConfig,
) -> Result<Measurement, BoxError>
where
    B::Client: StreamClient,
{
    let (streams, size, n) = scenario.streams();
    let client = B::connect(server.addr()).await?;
    let ctl = Arc::new(Control::default());
    let readers: Vec<_> = (0..streams)
        .map(|_| tokio::spawn(stream_reader(client.clone(), n, size, ctl.clone())))
        .collect();
    drop(client);
    let window = Window::run(server, cfg, &ctl).await?;
    for reader in readers {
        finish(reader).await?;
    }
    let items = ctl.items.load(Ordering::Relaxed);
    if items == 0 {
        return Err("no stream item arrived in the measured window".into());
    }
    Ok(window.measurement(items, None, &ctl))
}

/// The async part of [`run_stream_case`] for [`Kind::CallsUnderStream`]:
/// sequential `add` calls on one connection, first with nothing else on
/// it, then beside a bulk stream (restarted when it ends). CPU time and
/// the stream's bytes are those of the second window.
async fn measure_calls_under_stream<B: Backend>(
    scenario: Scenario,
    server: &ServerProcess,
    cfg: RunConfig,
) -> Result<Measurement, BoxError>
where
    B::Client: StreamClient,
{
    let client = B::connect(server.addr()).await?;

    let ctl = Arc::new(Control::default());
    let calls = tokio::spawn(caller(client.clone(), None, 0, ctl.clone()));
    Window::run(server, cfg, &ctl).await?;
    let idle = Latency::of(finish(calls).await?)?;

    let (_, size, n) = scenario.streams();
    let ctl = Arc::new(Control::default());
    let bulk = tokio::spawn(stream_reader(client.clone(), n, size, ctl.clone()));
    let calls = tokio::spawn(caller(client, None, 0, ctl.clone()));
    let window = Window::run(server, cfg, &ctl).await?;
    let latencies = finish(calls).await?;
    finish(bulk).await?;
    if ctl.items.load(Ordering::Relaxed) == 0 {
        return Err("no stream item arrived in the measured window".into());
    }
    let calls = latencies.len() as u64;
    Ok(Measurement {
        idle: Some(idle),
        ..window.measurement(calls, Some(Latency::of(latencies)?), &ctl)
    })
}

/// What `idle-mem` measured: server RSS at three moments.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IdleMem {
    /// Connections opened.
    pub(crate) conns: usize,
    /// Server RSS before any connection, KiB.
    pub(crate) base_kib: u64,
    /// Server RSS with every connection open and idle, KiB.
    pub(crate) connected_kib: u64,
    /// Server RSS after one call on every connection, then idle, KiB.
    pub(crate) after_call_kib: u64,
}

/// Opens `conns` idle connections to a fresh server process of `B` and reads
/// the server's RSS before, after connecting, and after one call on each.
///
/// # Errors
/// When the server does not start or a connection or call fails.
pub(crate) fn idle_mem<B: Backend>(
    transport: Transport,
    conns: usize,
    threads: usize,
) -> Result<IdleMem, BoxError> {
    let server = ServerProcess::spawn(B::NAME, transport, threads)?;
    let rt = runtime(threads)?;
    let settle = Duration::from_millis(500);
    let result = rt.block_on(async {
        tokio::time::sleep(settle).await;
        let base_kib = sys::proc_rss_kib(server.pid())?;
        let mut clients = Vec::with_capacity(conns);
        for i in 0..conns {
            let c = B::connect(server.addr())
                .await
                .map_err(|e| format!("connection {i}: {e}"))?;
            clients.push(c);
        }
        tokio::time::sleep(settle).await;
        let connected_kib = sys::proc_rss_kib(server.pid())?;
        for c in &clients {
            c.add(1, 2).await?;
        }
        tokio::time::sleep(settle).await;
        let after_call_kib = sys::proc_rss_kib(server.pid())?;
        drop(clients);
        Ok::<_, BoxError>(IdleMem {
            conns,
            base_kib,
            connected_kib,
            after_call_kib,
        })
    });
    drop(rt);
    drop(server);
    result
}
