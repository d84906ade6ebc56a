//! `echo-server <port> [options]`: the seed's upper-case echo server (seed
//! 000) on dipc's engine: it prints each message it receives and replies with
//! it in UPPER CASE, and announces itself to a gateway with `--gateway`.

use std::process::ExitCode;

use dipc::echo_cli::EchoArgs;

const USAGE: &str = "usage: echo-server <port> [options]; see echo-server --help";

fn main() -> ExitCode {
    dipc::run("echo-server", USAGE, EchoArgs::into_config)
}
