//! The command line: one subcommand per job. Each subcommand's options live
//! with the job (`bench::BenchArgs`, `ceiling::CeilingArgs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::ceiling::CeilingArgs;

/// dipc's client tools.
#[derive(Debug, Parser)]
#[command(name = "client", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load generator: N connections from one epoll loop, closed loop, with
    /// pipelining; reports throughput and latency percentiles
    Bench(BenchArgs),
    /// A trivial server that answers every request line with fixed bytes:
    /// the most any server could do on this machine
    Ceiling(CeilingArgs),
}

impl Command {
    /// The subcommand's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Bench(_) => "bench",
            Command::Ceiling(_) => "ceiling",
        }
    }
}

impl Cli {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Command::Bench(args) => crate::bench::run(&args),
            Command::Ceiling(args) => crate::ceiling::run(&args).map(|()| ExitCode::SUCCESS),
        }
    }
}
