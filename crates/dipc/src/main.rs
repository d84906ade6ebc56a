//! `dipc <mailboxes> <mailbox KiB> <port> <packet KiB> [options]`: checks the
//! command line and the machine, then starts the daemon (see supervisor.rs
//! for the process model).

mod announcer;
mod cli;
mod logging;
mod pool_policy;
mod preflight;
mod signals;
mod startup;
mod supervisor;
mod title;

use std::process::ExitCode;

use clap::Parser;

const USAGE: &str =
    "usage: dipc <mailboxes> <mailbox KiB> <port> <packet KiB> [options]; see dipc --help";

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

fn main() -> ExitCode {
    let args = match cli::Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("dipc: error: {} ({USAGE})", one_line(&e));
            return ExitCode::from(2);
        }
    };
    let config = match args.into_config() {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("dipc: error: {reason}");
            return ExitCode::from(2);
        }
    };
    let (listener, leftover) = match preflight::check(&config) {
        Ok(ok) => ok,
        Err(reason) => {
            eprintln!("dipc: error: {reason}");
            return ExitCode::FAILURE;
        }
    };
    startup::start(config, listener, leftover)
}
