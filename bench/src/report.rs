//! Tables: one per scenario × transport as runs finish, then a summary of
//! throughput ratios (and, for `calls-under-stream`, of latency).

use std::fmt::Write as _;

use crate::harness::{Kind, Measurement, Scenario, Transport};

/// The outcome of one implementation in one scenario × transport.
pub(crate) struct Row {
    /// Implementation name.
    pub(crate) imp: &'static str,
    /// What it measured, or why it has no figures.
    pub(crate) outcome: Result<Measurement, String>,
}

/// Every row of one scenario × transport.
pub(crate) struct Group {
    /// The workload.
    pub(crate) scenario: Scenario,
    /// Whether client and server were pinned to one CPU.
    pub(crate) pinned: bool,
    /// The socket kind.
    pub(crate) transport: Transport,
    /// One row per implementation, in run order.
    pub(crate) rows: Vec<Row>,
}

/// The target the issue set for `ours` in a scenario, as text.
fn target(scenario: Scenario) -> Option<&'static str> {
    match scenario {
        Scenario::Stream1k => Some(">= 0.80x"),
        Scenario::Streams64x64 => Some(">= 0.70x"),
        Scenario::CallsUnderStream => Some("< 5x"),
        _ => None,
    }
}

impl Group {
    /// The measurement of implementation `imp`, if it has one.
    fn get(&self, imp: &str) -> Option<&Measurement> {
        self.rows
            .iter()
            .find(|r| r.imp == imp)
            .and_then(|r| r.outcome.as_ref().ok())
    }

    /// The scenario's label, marking pinned runs.
    fn label(&self) -> String {
        if self.pinned {
            format!("{} (pinned to cpu 0)", self.scenario.name())
        } else {
            self.scenario.name().to_owned()
        }
    }

    /// `num/den` of throughput (calls/s or items/s), as text.
    fn ratio(&self, num: &str, den: &str) -> String {
        match (self.get(num), self.get(den)) {
            (Some(n), Some(d)) => format!("{:.2}x", n.per_sec() / d.per_sec()),
            _ => "n/a".to_owned(),
        }
    }

    /// `num/den` of median latency, as text.
    fn p50_ratio(&self, num: &str, den: &str) -> String {
        match (
            self.get(num).and_then(|m| m.latency),
            self.get(den).and_then(|m| m.latency),
        ) {
            (Some(n), Some(d)) => format!("{:.2}x", n.p50_us / d.p50_us),
            _ => "n/a".to_owned(),
        }
    }

    /// `calls-under-stream`: p99 latency beside the stream over p99 on the
    /// idle connection, of implementation `imp`, as text.
    fn p99_growth(&self, imp: &str) -> String {
        match self.get(imp).and_then(|m| m.latency.zip(m.idle)) {
            Some((busy, idle)) => format!("{:.2}x", busy.p99_us / idle.p99_us),
            None => "n/a".to_owned(),
        }
    }

    /// The table of this group.
    pub(crate) fn render(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== {} over {}: {} ==",
            self.label(),
            self.transport,
            self.scenario.describe()
        );
        match self.scenario.kind() {
            Kind::Calls => self.render_calls(&mut s),
            Kind::Streams => self.render_streams(&mut s),
            Kind::CallsUnderStream => self.render_calls_under_stream(&mut s),
        }
        s.push('\n');
        s
    }

    /// The rows of a scenario without streams, and its ratios.
    fn render_calls(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  {:<6} {:>11} {:>15} {:>15} {:>10} {:>10}",
            "impl", "calls/s", "client µs/call", "server µs/call", "p50 µs", "p99 µs"
        );
        for row in &self.rows {
            match &row.outcome {
                Ok(m) => {
                    let (p50, p99) = m
                        .latency
                        .map_or((f64::NAN, f64::NAN), |l| (l.p50_us, l.p99_us));
                    let _ = writeln!(
                        s,
                        "  {:<6} {:>11} {:>15.2} {:>15.2} {:>10.1} {:>10.1}",
                        row.imp,
                        thousands(m.per_sec()),
                        m.client_us_per_op(),
                        m.server_us_per_op(),
                        p50,
                        p99
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "  {:<6} -- {e}", row.imp);
                }
            }
        }
        let _ = write!(
            s,
            "  throughput ratio  ours/tarpc {}  ours/floor {}",
            self.ratio("ours", "tarpc"),
            self.ratio("ours", "floor")
        );
        if self.scenario == Scenario::SeqAdd {
            let _ = write!(s, "  |  p50 ours/floor {}", self.p50_ratio("ours", "floor"));
        }
    }

    /// The rows of a stream scenario, and its ratio.
    fn render_streams(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  {:<6} {:>11} {:>9} {:>15} {:>15}",
            "impl", "items/s", "MB/s", "client µs/item", "server µs/item"
        );
        for row in &self.rows {
            match &row.outcome {
                Ok(m) => {
                    let _ = writeln!(
                        s,
                        "  {:<6} {:>11} {:>9.1} {:>15.3} {:>15.3}",
                        row.imp,
                        thousands(m.per_sec()),
                        m.stream_mb_per_sec(),
                        m.client_us_per_op(),
                        m.server_us_per_op()
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "  {:<6} -- {e}", row.imp);
                }
            }
        }
        let _ = write!(
            s,
            "  items/s ratio  ours/floor {}",
            self.ratio("ours", "floor")
        );
        if let Some(t) = target(self.scenario) {
            let _ = write!(s, "  (target {t})");
        }
    }

    /// The rows of `calls-under-stream`: each implementation's calls beside
    /// the stream and on the idle connection.
    fn render_calls_under_stream(&self, s: &mut String) {
        let _ = writeln!(
            s,
            "  {:<6} {:>11} {:>10} {:>10} {:>10} {:>10} {:>9} {:>13}",
            "impl",
            "calls/s",
            "p50 µs",
            "p99 µs",
            "idle p50",
            "idle p99",
            "p99/idle",
            "stream MB/s"
        );
        for row in &self.rows {
            match &row.outcome {
                Ok(m) => {
                    let (p50, p99) = m
                        .latency
                        .map_or((f64::NAN, f64::NAN), |l| (l.p50_us, l.p99_us));
                    let (i50, i99) = m
                        .idle
                        .map_or((f64::NAN, f64::NAN), |l| (l.p50_us, l.p99_us));
                    let _ = writeln!(
                        s,
                        "  {:<6} {:>11} {:>10.1} {:>10.1} {:>10.1} {:>10.1} {:>9} {:>13.1}",
                        row.imp,
                        thousands(m.per_sec()),
                        p50,
                        p99,
                        i50,
                        i99,
                        self.p99_growth(row.imp),
                        m.stream_mb_per_sec()
                    );
                }
                Err(e) => {
                    let _ = writeln!(s, "  {:<6} -- {e}", row.imp);
                }
            }
        }
        let _ = write!(
            s,
            "  p99 beside the stream / p99 idle  ours {}  floor {}",
            self.p99_growth("ours"),
            self.p99_growth("floor")
        );
        if let Some(t) = target(self.scenario) {
            let _ = write!(s, "  (target for ours {t})");
        }
    }
}

/// The closing summary: the rate of each implementation (calls/s, or
/// items/s in the stream scenarios) and the ratios, one line per scenario ×
/// transport; then, for `calls-under-stream`, how much the stream raised
/// the calls' p99.
pub(crate) fn summary(groups: &[Group]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n== summary (calls/s, items/s for stream-1k and streams-64x64; ratios are of throughput) =="
    );
    let _ = writeln!(
        s,
        "  {:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>12}",
        "scenario", "tarpc", "floor", "ours", "ours/tarpc", "ours/floor", "floor/tarpc"
    );
    for g in groups {
        let rate = |imp: &str| {
            g.get(imp)
                .map_or_else(|| "n/a".to_owned(), |m| thousands(m.per_sec()))
        };
        let _ = writeln!(
            s,
            "  {:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>12}",
            format!("{} / {}", g.label(), g.transport),
            rate("tarpc"),
            rate("floor"),
            rate("ours"),
            g.ratio("ours", "tarpc"),
            g.ratio("ours", "floor"),
            g.ratio("floor", "tarpc"),
        );
    }
    let under: Vec<&Group> = groups
        .iter()
        .filter(|g| g.scenario.kind() == Kind::CallsUnderStream)
        .collect();
    if !under.is_empty() {
        let _ = writeln!(
            s,
            "  p99 of calls beside a stream / p99 on the idle connection:"
        );
        for g in under {
            let _ = writeln!(
                s,
                "  {:<28} {:>11} {:>11} {:>11}",
                format!("{} / {}", g.label(), g.transport),
                "n/a",
                g.p99_growth("floor"),
                g.p99_growth("ours"),
            );
        }
    }
    s
}

/// Formats a rate as an integer with thousands separators.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
