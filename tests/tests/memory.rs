//! Memory a hostile peer can pin, measured on a server in a process of its
//! own (`budget_server`) through `/proc/<pid>/status`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rpc_tests::fixtures::CalcClient;
use rpc_tests::raw::{connected, RawStream};
use rpc_tests::within;
use tokio::io::AsyncWriteExt;

/// The server process and the lines it prints.
struct ServerProcess {
    child: Child,
    addr: rpc_transport::Address,
    lines: std::sync::mpsc::Receiver<String>,
}

impl ServerProcess {
    fn start(budget: usize, frame_timeout_ms: u64) -> ServerProcess {
        Self::start_with(budget, frame_timeout_ms, None)
    }

    /// With at most `max_files` open descriptors, when given; the server's
    /// log then goes to `log`.
    fn start_with(
        budget: usize,
        frame_timeout_ms: u64,
        limits: Option<(u32, &std::path::Path)>,
    ) -> ServerProcess {
        let exe = env!("CARGO_BIN_EXE_budget_server");
        let args = [budget.to_string(), frame_timeout_ms.to_string()];
        let mut command = match limits {
            Some((max_files, _)) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -n {max_files} && exec \"$0\" \"$@\""))
                    .arg(exe)
                    .args(args);
                c
            }
            None => {
                let mut c = Command::new(exe);
                c.args(args);
                c
            }
        };
        if let Some((_, log)) = limits {
            command.stderr(std::fs::File::create(log).unwrap());
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("budget_server starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        out.read_line(&mut first).unwrap();
        let addr = first.trim().parse().expect("an address");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        ServerProcess { child, addr, lines }
    }

    /// Resident memory now, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// The `disconnected` lines printed so far.
    fn disconnects(&self) -> Vec<String> {
        self.lines
            .try_iter()
            .filter_map(|l| l.strip_prefix("disconnected ").map(str::to_owned))
            .collect()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Announces a frame of the largest size and sends `body` bytes of it.
async fn start_big_frame(s: &mut Box<dyn RawStream>, body: usize) {
    s.write_all(&(16u32 << 20).to_le_bytes()).await.unwrap();
    let chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    while sent < body {
        let n = chunk.len().min(body - sent);
        if s.write_all(&chunk[..n]).await.is_err() {
            return; // cut by the server
        }
        sent += n;
    }
}

/// 1,000 connections each announce a 16 MiB frame and drip its body: the
/// server holds kilobytes for each (buffers grow with what arrives), cuts
/// every one at its frame deadline, and serves a good client meanwhile.
#[tokio::test]
async fn a_thousand_dripping_frames_hold_kilobytes_and_are_cut_at_their_deadline() {
    within(120, async {
        let server = ServerProcess::start(64 << 20, 3_000);
        let before = server.rss_kib();
        let mut drippers = Vec::new();
        for _ in 0..1000 {
            let mut s = connected(&server.addr).await;
            s.write_all(&(16u32 << 20).to_le_bytes()).await.unwrap();
            s.write_all(&[0; 10]).await.unwrap();
            drippers.push(s);
        }
        let good = rpc_transport::connect(&server.addr).await.unwrap();
        let calc = CalcClient::new(&good);
        // Drip one byte into every frame, twice.
        for _ in 0..2 {
            for s in drippers.iter_mut() {
                let _ = s.write_all(&[0]).await;
            }
            assert_eq!(calc.add(2, 3).await.unwrap(), 5);
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        let grown = server.rss_kib().saturating_sub(before);
        eprintln!("1,000 drippers: server RSS grew by {grown} KiB");
        // About 9 KiB of connection state each, and a few of buffer.
        assert!(
            grown < 40 * 1024,
            "server RSS grew by {grown} KiB for 1,000 drippers"
        );
        // Cut at the deadline, however the bytes come.
        let mut cut = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while cut < 1000 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(200)).await;
            for s in drippers.iter_mut() {
                let _ = s.write_all(&[0]).await;
            }
            cut += server
                .disconnects()
                .iter()
                .filter(|r| r.as_str() == "a frame did not arrive whole within 3s")
                .count();
        }
        assert_eq!(cut, 1000);
        assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    })
    .await;
}

/// Connections that each send most of a 16 MiB frame and stop: together
/// they may hold the server's budget and no more; the ones that ask beyond
/// it are cut, the process lives, and a good client is served.
#[tokio::test]
async fn large_unfinished_frames_stay_within_the_servers_budget() {
    within(120, async {
        let budget = 48 << 20;
        let server = ServerProcess::start(budget, 60_000);
        let before = server.rss_kib();
        let good = rpc_transport::connect(&server.addr).await.unwrap();
        let calc = CalcClient::new(&good);
        let mut hogs = Vec::new();
        for _ in 0..24 {
            let mut s = connected(&server.addr).await;
            start_big_frame(&mut s, 6 << 20).await;
            hogs.push(s);
            assert_eq!(calc.add(2, 3).await.unwrap(), 5);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let grown = server.rss_kib().saturating_sub(before);
        eprintln!("24 unfinished 6 MiB frames, 48 MiB budget: server RSS grew by {grown} KiB");
        // 24 x 6 MiB were sent; the budget is 48 MiB, plus each connection's
        // free allowance and the allocator's slack.
        assert!(
            grown < (budget as u64 >> 10) + 24 * 1024,
            "server RSS grew by {grown} KiB"
        );
        let over: Vec<String> = server
            .disconnects()
            .into_iter()
            .filter(|r| r.starts_with("the shared budget of"))
            .collect();
        eprintln!("{} of 24 cut for the budget", over.len());
        // Each hog needs about 6 MiB of budget: no more than eight fit.
        assert!(over.len() >= 24 - 8, "only {} cut: {over:?}", over.len());
        assert_eq!(calc.add(1, 1).await.unwrap(), 2);
    })
    .await;
}

/// A server out of file descriptors keeps serving its connections and
/// refuses new dialers at once, saying why, with a warning in its log.
#[tokio::test]
async fn a_server_out_of_descriptors_refuses_new_dialers_and_serves_the_rest() {
    within(60, async {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        let server = ServerProcess::start_with(64 << 20, 30_000, Some((48, &log)));
        let good = rpc_transport::connect(&server.addr).await.unwrap();
        let calc = CalcClient::new(&good);
        let mut peers = Vec::new();
        let refusal = loop {
            match rpc_transport::connect(&server.addr).await {
                Ok(p) => peers.push(p),
                Err(e) => break e,
            }
            assert!(peers.len() < 200, "the descriptor limit never bit");
        };
        assert_eq!(
            refusal,
            rpc_core::RpcError::Refused("the server is out of file descriptors".into())
        );
        // Again, promptly: nobody waits in the kernel's queue.
        let t = std::time::Instant::now();
        let again = rpc_transport::connect(&server.addr).await.unwrap_err();
        assert_eq!(again, refusal);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        // Everyone already in is served.
        assert_eq!(calc.add(2, 3).await.unwrap(), 5);
        for p in &peers {
            assert_eq!(CalcClient::new(p).add(1, 1).await.unwrap(), 2);
        }
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("out of file descriptors"), "{logged}");
        assert!(
            logged.contains("127.0.0.1:"),
            "the dialer's address: {logged}"
        );
        eprintln!(
            "{} connections open when the descriptors ran out",
            peers.len() + 1
        );
    })
    .await;
}

/// A 1 GiB stream into a consumer that reads slowly: the credit keeps both
/// processes' memory near their baseline, whatever the consumer's pace.
#[test]
fn a_gibibyte_stream_into_a_slow_reader_keeps_both_sides_small() {
    let exe = env!("CARGO_BIN_EXE_stream_peer");
    let mut server = Command::new(exe)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("stream_peer serve starts");
    let mut out = BufReader::new(server.stdout.take().unwrap());
    let mut addr = String::new();
    out.read_line(&mut addr).unwrap();

    const GIB: u64 = 1 << 30;
    let consumer = Command::new(exe)
        .args(["consume", addr.trim(), &GIB.to_string(), "500"])
        .output()
        .expect("stream_peer consume runs");
    assert!(consumer.status.success(), "{consumer:?}");
    let report = String::from_utf8(consumer.stdout).unwrap();
    let words: Vec<&str> = report.split_whitespace().collect();
    assert_eq!(words[..2], ["consumed", &GIB.to_string()], "{report}");
    let (base, peak): (u64, u64) = (words[3].parse().unwrap(), words[4].parse().unwrap());

    drop(server.stdin.take());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _ = server.wait();
    let words: Vec<&str> = line.split_whitespace().collect();
    let (server_base, server_peak): (u64, u64) =
        (words[1].parse().unwrap(), words[2].parse().unwrap());

    // A few MiB: the stream window (64 KiB), the write queue's mark
    // (64 KiB), read and write buffers, and the allocator's slack.
    const SLACK_KIB: u64 = 8 * 1024;
    assert!(
        peak.saturating_sub(base) < SLACK_KIB,
        "consumer grew from {base} KiB to {peak} KiB"
    );
    assert!(
        server_peak.saturating_sub(server_base) < SLACK_KIB,
        "server grew from {server_base} KiB to {server_peak} KiB"
    );
    println!("consumer {base} -> {peak} KiB, server {server_base} -> {server_peak} KiB");
}
