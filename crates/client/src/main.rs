//! The `client` binary: parse the command line, run the subcommand, turn its
//! error into one line on stderr and an exit status.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = client::cli::Cli::parse();
    let name = cli.name();
    match cli.run() {
        Ok(code) => code,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line, which is
            // what a script reading stderr wants.
            client::say::err_line(&format!("client {name}: {error:#}"));
            ExitCode::FAILURE
        }
    }
}
