//! `client bench`'s options, and what they mean for the run.

use std::time::Duration;

use clap::Args;

use super::mix::Mix;
use crate::protocol::Protocol;

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The server to load
    #[arg(
        short,
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:50007"
    )]
    pub server: String,

    /// The wire protocol
    #[arg(long, value_enum, default_value_t = Protocol::Dipc)]
    pub protocol: Protocol,

    /// Connections, all driven from one thread
    #[arg(short, long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_000))]
    pub connections: u32,

    /// Seconds to run after the warmup [default: 5]
    #[arg(short, long, value_name = "SECS", value_parser = parse_seconds)]
    pub duration: Option<f64>,

    /// Requests to send in all after the warmup, instead of a duration (wins over --duration)
    #[arg(short = 'n', long, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,

    /// Operations and their weights: read, write (dipc mailboxes), get, put, del (keys), e.g. read:80,write:20
    #[arg(long, value_name = "OP[:WEIGHT],...", default_value = "read")]
    pub mix: Mix,

    /// Size in bytes of the values written
    #[arg(long, value_name = "BYTES", default_value_t = 100)]
    pub value_size: usize,

    /// Mailboxes 1..=N (dipc read/write) or keys 0..N, one chosen per request
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub spread: u64,

    /// Requests each connection sends in one write before waiting for all their replies
    #[arg(short = 'P', long, value_name = "DEPTH", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub pipeline: u32,

    /// Seconds of load before recording starts [default: 0.5 with a duration, 0 with -n]
    #[arg(long, value_name = "SECS", value_parser = parse_warmup)]
    pub warmup: Option<f64>,

    /// Do not write every mailbox or key of the spread once before the run
    #[arg(long)]
    pub no_prefill: bool,

    /// Print one JSON object instead of the report
    #[arg(long)]
    pub json: bool,

    /// Show a progress bar on stderr [default: for runs over 3 s, when stderr is a terminal]
    #[arg(long, overrides_with = "no_progress")]
    pub progress: bool,

    /// Never show a progress bar
    #[arg(long, overrides_with = "progress")]
    pub no_progress: bool,

    /// --protocol fixed: the length of every reply
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub reply_bytes: u64,

    /// Exit with status 1 when any request got an error reply
    #[arg(long)]
    pub fail_on_error: bool,
}

/// When the run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Stop {
    /// After this many recorded requests.
    Requests(u64),
    /// After this long of recording.
    Time(Duration),
}

/// Whether to show a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressChoice {
    Auto,
    Always,
    Never,
}

impl BenchArgs {
    pub const DEFAULT_DURATION: f64 = 5.0;
    pub const DEFAULT_WARMUP: f64 = 0.5;

    pub fn stop(&self) -> Stop {
        match (self.requests, self.duration) {
            (Some(n), _) => Stop::Requests(n),
            (None, secs) => Stop::Time(Duration::from_secs_f64(
                secs.unwrap_or(Self::DEFAULT_DURATION),
            )),
        }
    }

    pub fn warmup(&self) -> Duration {
        let default = match self.stop() {
            Stop::Requests(_) => 0.0,
            Stop::Time(_) => Self::DEFAULT_WARMUP,
        };
        Duration::from_secs_f64(self.warmup.unwrap_or(default))
    }

    pub fn progress_choice(&self) -> ProgressChoice {
        match (self.progress, self.no_progress) {
            (true, _) => ProgressChoice::Always,
            (_, true) => ProgressChoice::Never,
            _ => ProgressChoice::Auto,
        }
    }
}

/// A positive number of seconds, at most a day.
fn parse_seconds(text: &str) -> Result<f64, String> {
    let secs = parse_warmup(text)?;
    if secs <= 0.0 {
        return Err("must be above 0".into());
    }
    Ok(secs)
}

/// A number of seconds from 0 to a day.
fn parse_warmup(text: &str) -> Result<f64, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(0.0..=86_400.0).contains(&secs) {
        return Err("must be between 0 and 86400 seconds".into());
    }
    Ok(secs)
}
