//! The shared harness: the trait each implementation fills in, the server
//! child process, the scenarios and the measurement of one run.
//!
//! One run = one implementation × one scenario × one transport. It starts a
//! fresh server process (this binary re-executed as `rpc-bench serve`),
//! connects from a fresh client runtime in this process, runs closed-loop
//! callers for a warm-up and then for the measured window, and reads the CPU
//! time of both processes at the edges of that window.

use std::fmt;
use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
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
}

impl Scenario {
    /// Every scenario, in report order.
    pub(crate) const ALL: [Scenario; 4] = [
        Scenario::SeqAdd,
        Scenario::ParAdd,
        Scenario::Echo1k,
        Scenario::Conns16,
    ];

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
            Scenario::SeqAdd => 1,
            Scenario::ParAdd => 64,
            Scenario::Echo1k => 32,
            Scenario::Conns16 => 16,
        }
    }

    /// Payload of each echo call, or `None` for `add`.
    fn echo_len(self) -> Option<usize> {
        match self {
            Scenario::Echo1k => Some(1024),
            _ => None,
        }
    }

    /// Its name on the command line and in tables.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Scenario::SeqAdd => "seq-add",
            Scenario::ParAdd => "par-add",
            Scenario::Echo1k => "echo-1k",
            Scenario::Conns16 => "conns-16",
        }
    }

    /// One line saying what it does.
    pub(crate) fn describe(self) -> String {
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

/// What one run measured, over the measured window only.
#[derive(Clone, Debug)]
pub(crate) struct Measurement {
    /// Calls completed.
    pub(crate) calls: u64,
    /// Wall-clock length of the window.
    pub(crate) elapsed: Duration,
    /// CPU time of the client process (user + system).
    pub(crate) client_cpu_us: u64,
    /// CPU time of the server process (user + system).
    pub(crate) server_cpu_us: u64,
    /// Median call latency, microseconds.
    pub(crate) p50_us: f64,
    /// 99th-percentile call latency, microseconds.
    pub(crate) p99_us: f64,
}

impl Measurement {
    /// Completed calls per second.
    pub(crate) fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64()
    }

    /// Client CPU microseconds per call.
    pub(crate) fn client_us_per_call(&self) -> f64 {
        self.client_cpu_us as f64 / self.calls.max(1) as f64
    }

    /// Server CPU microseconds per call.
    pub(crate) fn server_us_per_call(&self) -> f64 {
        self.server_cpu_us as f64 / self.calls.max(1) as f64
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

/// Flags shared by the callers of one run.
#[derive(Default)]
struct Control {
    /// Set while the measured window is open: completed calls count.
    recording: AtomicBool,
    /// Set when the callers should finish their current call and return.
    stop: AtomicBool,
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
    while !ctl.stop.load(Ordering::Relaxed) {
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

    let mut latencies = Vec::new();
    for task in tasks {
        let joined = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .map_err(|_| "a caller did not finish within 10 s after stop")?;
        latencies.extend(joined??);
    }
    if latencies.is_empty() {
        return Err("no call completed in the measured window".into());
    }
    latencies.sort_unstable();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        f64::from(latencies[i]) / 1000.0
    };
    Ok(Measurement {
        calls: latencies.len() as u64,
        elapsed,
        client_cpu_us: client1.saturating_sub(client0),
        server_cpu_us: server1.saturating_sub(server0),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
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
