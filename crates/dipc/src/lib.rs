//! The dipc daemon as a library of its parts, so that two programs share one
//! engine: `dipc` (mailboxes and the key-value store) and `echo-server` (the
//! seed's upper-case echo) are the same supervisor, prefork pool, accept
//! lock, gateway announcer and `dipcrm`, and differ only in what a
//! connection speaks ([`worker::Service`]). See supervisor.rs for the
//! process model.

pub mod announcer;
pub mod cli;
pub mod echo_cli;
pub mod logging;
pub mod pool_policy;
pub mod preflight;
pub mod signals;
pub mod startup;
pub mod supervisor;
pub mod title;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::Config;

/// clap's error in one line: its first paragraph, without the "error:" tag.
fn one_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let first: Vec<&str> = rendered
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    first
        .join(" ")
        .trim_start_matches("error:")
        .trim()
        .to_string()
}

/// A daemon's `main`: parses the command line `A` into a [`Config`] (a
/// refusal is one line and exit status 2), checks the machine, and starts.
pub fn run<A: Parser>(
    program: &str,
    usage: &str,
    into_config: impl FnOnce(A) -> Result<Config, String>,
) -> ExitCode {
    let args = match A::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("{program}: error: {} ({usage})", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let config = match into_config(args) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("{program}: error: {reason}");
            return ExitCode::from(2);
        }
    };
    let (listener, leftover) = match preflight::check(&config) {
        Ok(ok) => ok,
        Err(reason) => {
            eprintln!("{program}: error: {reason}");
            return ExitCode::FAILURE;
        }
    };
    startup::start(config, listener, leftover)
}
