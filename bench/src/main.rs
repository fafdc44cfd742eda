//! `rpc-bench`: this RPC framework against tarpc and against a hand-written
//! minimal floor, on the same service and workloads, with the server in a
//! separate process.
//!
//! ```text
//! cargo run --release -p rpc-bench                      # every scenario, tcp + unix
//! cargo run --release -p rpc-bench -- --only seq-add --pin
//! cargo run --release -p rpc-bench -- --impls tarpc,floor --transports unix
//! cargo run --release -p rpc-bench -- --only par-add,echo-1k --transports tcp,tls
//! cargo run --release -p rpc-bench -- --only stream-1k,streams-64x64,calls-under-stream
//! cargo run --release -p rpc-bench -- idle-mem --impl ours --conns 10000
//! cargo run --release -p rpc-bench -- --only par-add,conns-16 --impls ours,ours-balanced
//! cargo run --release -p rpc-bench -- failover
//! ```
//!
//! See `docs/performance.md` for what is measured and how to read the tables.

mod balanced;
mod floor;
mod harness;
mod ours;
mod report;
mod sys;
mod tarpc_impl;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::harness::{
    BoxError, Endpoint, IdleMem, Kind, Measurement, RunConfig, Scenario, Transport,
};
use crate::report::{Group, Row};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    name = "rpc-bench",
    about = "Compare this RPC framework with tarpc and a minimal hand-written floor.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    /// A mode other than the comparison run.
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Options of the comparison run (the default mode).
    #[command(flatten)]
    run: RunArgs,
}

/// Modes other than the comparison run.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Open N idle connections to a server process and report its RSS growth per connection.
    IdleMem(IdleArgs),
    /// Kill one of two backends under a balanced client and report how long calls stop.
    Failover(FailoverArgs),
    /// Internal: run a server and print its address (started by the harness).
    #[command(hide = true)]
    Serve(ServeArgs),
}

/// The implementations under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Impl {
    /// tarpc with its bincode serde transport.
    Tarpc,
    /// The hand-written minimal multiplexed protocol.
    Floor,
    /// This framework.
    Ours,
    /// This framework's balanced client over one backend (the `ours`
    /// server), for the balancer's cost against a direct peer.
    #[value(name = "ours-balanced")]
    OursBalanced,
}

impl Impl {
    /// Its name in tables.
    fn name(self) -> &'static str {
        match self {
            Impl::Tarpc => <tarpc_impl::Tarpc as harness::Backend>::NAME,
            Impl::Floor => <floor::Floor as harness::Backend>::NAME,
            Impl::Ours => <ours::Ours as harness::Backend>::NAME,
            Impl::OursBalanced => <balanced::OursBalanced as harness::Backend>::NAME,
        }
    }

    /// Whether it can run `scenario` (tarpc has no streams; the balanced
    /// client is measured on calls only).
    fn runs(self, scenario: Scenario) -> bool {
        scenario.kind() == Kind::Calls || !matches!(self, Impl::Tarpc | Impl::OursBalanced)
    }

    /// Runs one scenario against it.
    fn run_case(
        self,
        scenario: Scenario,
        transport: Transport,
        cfg: RunConfig,
    ) -> Result<Measurement, BoxError> {
        if scenario.kind() != Kind::Calls {
            return match self {
                Impl::Tarpc | Impl::OursBalanced => Err("calls only".into()),
                Impl::Floor => harness::run_stream_case::<floor::Floor>(scenario, transport, cfg),
                Impl::Ours => harness::run_stream_case::<ours::Ours>(scenario, transport, cfg),
            };
        }
        match self {
            Impl::Tarpc => harness::run_case::<tarpc_impl::Tarpc>(scenario, transport, cfg),
            Impl::Floor => harness::run_case::<floor::Floor>(scenario, transport, cfg),
            Impl::Ours => harness::run_case::<ours::Ours>(scenario, transport, cfg),
            Impl::OursBalanced => {
                harness::run_case::<balanced::OursBalanced>(scenario, transport, cfg)
            }
        }
    }

    /// Runs the idle-memory measurement against it.
    fn idle_mem(
        self,
        transport: Transport,
        conns: usize,
        threads: usize,
    ) -> Result<IdleMem, BoxError> {
        match self {
            Impl::Tarpc => harness::idle_mem::<tarpc_impl::Tarpc>(transport, conns, threads),
            Impl::Floor => harness::idle_mem::<floor::Floor>(transport, conns, threads),
            Impl::Ours | Impl::OursBalanced => {
                harness::idle_mem::<ours::Ours>(transport, conns, threads)
            }
        }
    }

    /// Serves (the hidden `serve` mode).
    fn serve(self, listen: &Endpoint, threads: usize) -> Result<(), BoxError> {
        match self {
            Impl::Tarpc => harness::serve::<tarpc_impl::Tarpc>(listen, threads),
            Impl::Floor => harness::serve::<floor::Floor>(listen, threads),
            Impl::Ours | Impl::OursBalanced => harness::serve::<ours::Ours>(listen, threads),
        }
    }
}

/// Options of the comparison run.
#[derive(Args, Debug)]
struct RunArgs {
    /// Run only these scenarios (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Scenario>,
    /// Implementations to run (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tarpc,floor,ours"
    )]
    impls: Vec<Impl>,
    /// Transports to run (comma-separated; `tls` is TLS over TCP, not run
    /// by default).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "tcp,unix")]
    transports: Vec<Transport>,
    /// Also run seq-add with client and server pinned to CPU 0.
    #[arg(long)]
    pin: bool,
    /// Runtime worker threads on each side (1 = current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A multi-threaded runtime even for `--threads 1`.
    #[arg(long)]
    multi_thread: bool,
    /// Warm-up before each measured window, in milliseconds.
    #[arg(long, default_value_t = 300)]
    warmup_ms: u64,
    /// Measured window of each run, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    duration_ms: u64,
}

/// Options of `idle-mem`.
#[derive(Args, Debug)]
struct IdleArgs {
    /// Implementations to measure (comma-separated).
    #[arg(
        long = "impl",
        value_enum,
        value_delimiter = ',',
        default_value = "ours"
    )]
    impls: Vec<Impl>,
    /// Idle connections to open.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Runtime worker threads on each side.
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

/// Options of `failover`.
#[derive(Args, Debug)]
struct FailoverArgs {
    /// Transport.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// Closed-loop callers.
    #[arg(long, default_value_t = 16)]
    callers: usize,
    /// Run before the kill, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    before_ms: u64,
    /// Run after the kill, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    after_ms: u64,
}

/// Options of the hidden `serve` mode.
#[derive(Args, Debug)]
struct ServeArgs {
    /// Implementation to serve.
    #[arg(long = "impl", value_enum)]
    imp: Impl,
    /// Where to listen: tcp://ip:port, unix:///path or tls://ip:port.
    #[arg(long)]
    listen: String,
    /// Runtime worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// A multi-threaded runtime even for `--threads 1`.
    #[arg(long)]
    multi_thread: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Some(Cmd::Serve(args)) => serve(&args),
        Some(Cmd::IdleMem(args)) => idle_mem(&args),
        Some(Cmd::Failover(args)) => failover(&args),
        None => run(&cli.run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rpc-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The hidden server mode.
fn serve(args: &ServeArgs) -> Result<bool, BoxError> {
    harness::MULTI_THREAD.store(args.multi_thread, std::sync::atomic::Ordering::Relaxed);
    let listen: Endpoint = args.listen.parse()?;
    args.imp.serve(&listen, args.threads)?;
    Ok(true)
}

/// The comparison run. Returns `false` if any run of a built implementation
/// failed.
fn run(args: &RunArgs) -> Result<bool, BoxError> {
    harness::MULTI_THREAD.store(args.multi_thread, std::sync::atomic::Ordering::Relaxed);
    let cfg = RunConfig {
        threads: args.threads.max(1),
        warmup: Duration::from_millis(args.warmup_ms),
        duration: Duration::from_millis(args.duration_ms),
    };
    let mut plan: Vec<(Scenario, bool)> = Vec::new();
    for s in Scenario::ALL {
        if args.only.is_empty() || args.only.contains(&s) {
            plan.push((s, false));
            if args.pin && s == Scenario::SeqAdd {
                plan.push((s, true));
            }
        }
    }
    let mut runs = 0;
    let mut windows = 0;
    for &(scenario, _) in &plan {
        let n = args.impls.iter().filter(|imp| imp.runs(scenario)).count() as u32
            * args.transports.len() as u32;
        runs += n;
        windows += n * scenario.windows();
    }
    let per_window = cfg.warmup + cfg.duration + Duration::from_millis(100);
    println!(
        "rpc-bench: {} run(s) of {:.1} s + {:.1} s warm-up, {} runtime thread(s) per side ({}), ~{:.0} s",
        runs,
        cfg.duration.as_secs_f64(),
        cfg.warmup.as_secs_f64(),
        cfg.threads,
        if cfg.threads > 1 || args.multi_thread { "multi-thread runtime" } else { "current-thread runtime" },
        (per_window * windows).as_secs_f64()
    );
    let mut ok = true;
    let mut groups = Vec::new();
    for &(scenario, pinned) in &plan {
        for &transport in &args.transports {
            let _pin = if pinned {
                Some(sys::pin_to_cpu(0)?)
            } else {
                None
            };
            let mut rows = Vec::new();
            for &imp in &args.impls {
                let outcome = if imp.runs(scenario) {
                    imp.run_case(scenario, transport, cfg).map_err(|e| {
                        ok = false;
                        format!("failed: {e}")
                    })
                } else {
                    Err("n/a (no streams)".to_owned())
                };
                rows.push(Row {
                    imp: imp.name(),
                    outcome,
                });
            }
            let group = Group {
                scenario,
                pinned,
                transport,
                rows,
            };
            print!("{}", group.render());
            groups.push(group);
        }
    }
    print!("{}", report::summary(&groups));
    Ok(ok)
}

/// The `failover` mode.
fn failover(args: &FailoverArgs) -> Result<bool, BoxError> {
    let f = balanced::failover(
        args.transport,
        args.callers,
        Duration::from_millis(args.before_ms),
        Duration::from_millis(args.after_ms),
    )?;
    println!(
        "failover: balanced client over two `ours` backends ({}), {} callers of add, one backend killed",
        args.transport, args.callers
    );
    println!(
        "  calls answered                 {} before the kill, {} after",
        f.answered.0, f.answered.1
    );
    println!(
        "  calls failed (Interrupted)     {} (add is not idempotent: calls lost mid-call are not repeated)",
        f.failed
    );
    println!(
        "  longest pause between answers  {:?} before the kill, {:?} from the kill on",
        f.gap_before, f.gap_after
    );
    println!(
        "  first call started at the kill answered after {:?}",
        f.first_after
    );
    Ok(true)
}

/// The `idle-mem` mode.
fn idle_mem(args: &IdleArgs) -> Result<bool, BoxError> {
    let want = args.conns as u64 + 256;
    let limit = sys::raise_nofile(want)?;
    if limit < want {
        return Err(format!(
            "open-file limit {limit} is below the {want} needed for {} connections \
             (raise the hard limit: ulimit -Hn)",
            args.conns
        )
        .into());
    }
    let mut ok = true;
    for &imp in &args.impls {
        match imp.idle_mem(args.transport, args.conns, args.threads.max(1)) {
            Ok(m) => {
                let per = |kib: u64| kib.saturating_sub(m.base_kib) as f64 / m.conns.max(1) as f64;
                println!(
                    "idle-mem: {} over {}, {} connections",
                    imp.name(),
                    args.transport,
                    m.conns
                );
                println!("  server RSS before connecting   {:>9} KiB", m.base_kib);
                println!(
                    "  all connections open, idle     {:>9} KiB   {:>6.2} KiB per connection",
                    m.connected_kib,
                    per(m.connected_kib)
                );
                println!(
                    "  after one call on each, idle   {:>9} KiB   {:>6.2} KiB per connection",
                    m.after_call_kib,
                    per(m.after_call_kib)
                );
            }
            Err(e) => {
                println!("idle-mem: {} failed: {e}", imp.name());
                ok = false;
            }
        }
    }
    Ok(ok)
}
