//! The command line: one subcommand per job. Each subcommand's options live
//! with the job (`bench::BenchArgs`, `ceiling::CeilingArgs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::ceiling::CeilingArgs;

/// dipc's client tools. Without a subcommand: a session with one server,
/// given by --server, or by a gateway (--gateway, or asked on the keyboard).
#[derive(Debug, Parser)]
#[command(name = "client", version, about)]
pub struct Cli {
    /// The server to talk to
    #[arg(short, long, value_name = "HOST:PORT", conflicts_with = "gateway")]
    pub server: Option<String>,
    /// The gateway that hands out a server (seed 000)
    #[arg(short, long, value_name = "HOST:PORT")]
    pub gateway: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
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
    /// What error messages call this run.
    pub fn name(&self) -> &'static str {
        self.command.as_ref().map_or("session", Command::name)
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Some(Command::Bench(args)) => crate::bench::run(&args),
            Some(Command::Ceiling(args)) => crate::ceiling::run(&args).map(|()| ExitCode::SUCCESS),
            None => crate::session::run(self.server.as_deref(), self.gateway.as_deref()),
        }
    }
}
