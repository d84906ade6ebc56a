//! `client bench`: a closed-loop load generator. One thread drives every
//! connection from one epoll loop, so that it takes as little of the
//! machine as possible from the server it measures.
//!
//! A run: connect every connection; prefill (write every mailbox or key of
//! the spread once, unrecorded); warm up (load, unrecorded); then record
//! until the duration or the request count is reached; report.

mod args;
mod connect;
mod engine;
mod mix;
mod progress;
mod report;
mod rng;
mod tally;
mod workload;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;

pub use args::{BenchArgs, ProgressChoice, Stop};
pub use engine::NO_REPLY_LIMIT;
pub use mix::Mix;
pub use report::Report;
pub use rng::Rng;
pub use workload::Source;

use crate::protocol::Codec;
use engine::{Engine, Limits};
use progress::Progress;
use tally::Tally;

/// Descriptors the process needs besides its connections (stdio, epoll,
/// whatever the runtime opens).
const SPARE_FILES: u64 = 64;

pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    crate::limits::ensure_open_files(u64::from(args.connections) + SPARE_FILES)?;
    let codec = Codec::new(args.protocol, args.value_size, args.reply_bytes as usize);
    let streams = connect::connect_all(&args.server, args.connections)?;
    let mut engine = Engine::new(streams, codec, args.pipeline as usize, &args.server)?;

    if !args.no_prefill {
        prefill(args, &mut engine)?;
    }

    let stop = args.stop();
    let warmup = args.warmup();
    let mut progress = Progress::new(args.progress_choice(), stop, warmup);
    let record_from = Instant::now() + warmup;
    let limits = match stop {
        Stop::Requests(n) => Limits {
            record_from: Some(record_from),
            deadline: None,
            max_recorded: Some(n),
        },
        Stop::Time(duration) => Limits {
            record_from: Some(record_from),
            deadline: Some(record_from + duration),
            max_recorded: None,
        },
    };
    let mut tally = Tally::new().context("creating the latency histogram")?;
    let mut source = Source::random(args.mix.clone(), args.spread);
    engine.run(&mut source, limits, &mut tally, &mut progress)?;
    progress.finish();

    let report = Report::new(args, &tally, record_from);
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    if report.errors > 0 {
        let first = tally.first_error.as_deref().unwrap_or("?");
        eprintln!(
            "client bench: {} of {} requests got error replies (the first: {first})",
            report.errors, report.requests
        );
        if args.fail_on_error {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes every mailbox or key of the spread once, unrecorded, so that
/// reads return data and gets hit.
fn prefill(args: &BenchArgs, engine: &mut Engine) -> anyhow::Result<()> {
    let mut source = Source::prefill(&args.mix, args.protocol, args.spread);
    let total = source.remaining();
    let mut tally = Tally::new().context("creating the latency histogram")?;
    let limits = Limits {
        record_from: None,
        deadline: None,
        max_recorded: None,
    };
    engine
        .run(&mut source, limits, &mut tally, &mut Progress::hidden())
        .context("prefill")?;
    if tally.unrecorded_errors > 0 {
        eprintln!(
            "client bench: warning: {} of the {total} prefill writes got error replies (the first: {})",
            tally.unrecorded_errors,
            tally.first_error.as_deref().unwrap_or("?")
        );
    }
    Ok(())
}
