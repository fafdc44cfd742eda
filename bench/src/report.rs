//! Tables: one per scenario × transport as runs finish, then a summary of
//! throughput ratios.

use std::fmt::Write as _;

use crate::harness::{Measurement, Scenario, Transport};

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

    /// `num/den` of throughput, as text.
    fn ratio(&self, num: &str, den: &str) -> String {
        match (self.get(num), self.get(den)) {
            (Some(n), Some(d)) => format!("{:.2}x", n.calls_per_sec() / d.calls_per_sec()),
            _ => "n/a".to_owned(),
        }
    }

    /// `num/den` of median latency, as text.
    fn p50_ratio(&self, num: &str, den: &str) -> String {
        match (self.get(num), self.get(den)) {
            (Some(n), Some(d)) => format!("{:.2}x", n.p50_us / d.p50_us),
            _ => "n/a".to_owned(),
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
        let _ = writeln!(
            s,
            "  {:<6} {:>11} {:>15} {:>15} {:>10} {:>10}",
            "impl", "calls/s", "client µs/call", "server µs/call", "p50 µs", "p99 µs"
        );
        for row in &self.rows {
            match &row.outcome {
                Ok(m) => {
                    let _ = writeln!(
                        s,
                        "  {:<6} {:>11} {:>15.2} {:>15.2} {:>10.1} {:>10.1}",
                        row.imp,
                        thousands(m.calls_per_sec()),
                        m.client_us_per_call(),
                        m.server_us_per_call(),
                        m.p50_us,
                        m.p99_us
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
        s.push('\n');
        s
    }
}

/// The closing summary: calls/s of each implementation and the ratios, one
/// line per scenario × transport.
pub(crate) fn summary(groups: &[Group]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n== summary (calls/s; ratios are of throughput) ==");
    let _ = writeln!(
        s,
        "  {:<28} {:>11} {:>11} {:>11} {:>11} {:>11} {:>12}",
        "scenario", "tarpc", "floor", "ours", "ours/tarpc", "ours/floor", "floor/tarpc"
    );
    for g in groups {
        let rate = |imp: &str| {
            g.get(imp)
                .map_or_else(|| "n/a".to_owned(), |m| thousands(m.calls_per_sec()))
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
