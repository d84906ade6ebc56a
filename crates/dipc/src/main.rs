//! `dipc <mailboxes> <mailbox KiB> <port> <packet KiB> [options]`: checks the
//! command line and the machine, then starts the daemon (see supervisor.rs
//! for the process model).

use std::process::ExitCode;

use dipc::cli::Args;

const USAGE: &str =
    "usage: dipc <mailboxes> <mailbox KiB> <port> <packet KiB> [options]; see dipc --help";

fn main() -> ExitCode {
    dipc::run("dipc", USAGE, Args::into_config)
}
