//! The run's result: the human report and the JSON object.

use std::fmt::Write as _;
use std::time::Instant;

use serde::Serialize;

use super::args::BenchArgs;
use super::tally::Tally;

/// One run's figures; the field names are the JSON keys.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub server: String,
    pub protocol: String,
    pub connections: u32,
    pub pipeline: u32,
    pub mix: String,
    pub value_size: usize,
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// Nanoseconds to microseconds, to 0.1 µs (the histogram keeps 3
/// significant figures; more decimals would be noise).
fn micros(nanos: u64) -> f64 {
    (nanos as f64 / 100.0).round() / 10.0
}

impl Report {
    /// The report of a run whose recording started at `start`.
    pub fn new(args: &BenchArgs, tally: &Tally, start: Instant) -> Self {
        let seconds = tally.elapsed_since(start).as_secs_f64();
        let rps = if seconds > 0.0 {
            (tally.requests as f64 / seconds * 10.0).round() / 10.0
        } else {
            0.0
        };
        let quantile = |q: f64| micros(tally.latency.value_at_quantile(q));
        Report {
            server: args.server.clone(),
            protocol: args.protocol.to_string(),
            connections: args.connections,
            pipeline: args.pipeline,
            mix: args.mix.to_string(),
            value_size: args.value_size,
            requests: tally.requests,
            errors: tally.errors,
            seconds: (seconds * 1e6).round() / 1e6,
            rps,
            p50_us: quantile(0.5),
            p99_us: quantile(0.99),
            p999_us: quantile(0.999),
            max_us: micros(tally.latency.max()),
        }
    }

    pub fn json(&self) -> String {
        // A struct of numbers and strings always serializes.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    pub fn human(&self) -> String {
        let mut out = String::new();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(out, "{key:<12} {value}");
        };
        line("server", self.server.clone());
        line("protocol", self.protocol.clone());
        line("connections", self.connections.to_string());
        line("pipeline", self.pipeline.to_string());
        line("mix", self.mix.clone());
        line("value size", format!("{} bytes", self.value_size));
        line("requests", self.requests.to_string());
        line("errors", self.errors.to_string());
        line("duration", format!("{:.3} s", self.seconds));
        line("throughput", format!("{:.0} req/s", self.rps));
        line(
            "latency",
            format!(
                "p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
                self.p50_us, self.p99_us, self.p999_us, self.max_us
            ),
        );
        out
    }
}
