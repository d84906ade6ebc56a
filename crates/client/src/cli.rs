//! The command line: one subcommand per job. Each subcommand's options live
//! with the job (`bench::BenchArgs`, `ceiling::CeilingArgs`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::bench::BenchArgs;
use crate::ceiling::CeilingArgs;
use crate::chat::ChatArgs;
use crate::oneshot::{OneShot, Target};

/// dipc's client: an interactive session, one-shot requests for scripts, and
/// the benchmark's tools.
///
/// Without a subcommand: an interactive session with one server, given by
/// --server, or by a gateway (--gateway, or asked on the keyboard). With
/// read, write, append, wait, put, get, del or stat: one request; exit
/// status 0 done, 1 the server answered ERR, 2 usage, 3 wait timed out, 4 no
/// server reached or understood.
#[derive(Debug, Parser)]
#[command(name = "client", version)]
pub struct Cli {
    /// The server to talk to (a one-shot request's too)
    #[arg(short, long, value_name = "HOST:PORT", conflicts_with = "gateway")]
    pub server: Option<String>,
    /// The gateway that hands out a server (seed 000); one-shot requests ask it once
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
    #[command(flatten)]
    OneShot(OneShot),
    /// A chat in mailbox M: its lines shown, new ones as they come (dipc's
    /// wait), yours sent with append as `HH:MM:SS NAME: text`
    Chat(ChatArgs),
}

impl Command {
    /// The subcommand's name, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Bench(_) => "bench",
            Command::Ceiling(_) => "ceiling",
            Command::OneShot(command) => command.name(),
            Command::Chat(_) => "chat",
        }
    }
}

impl Cli {
    /// What error messages call this run.
    pub fn name(&self) -> &'static str {
        self.command.as_ref().map_or("session", Command::name)
    }

    /// --server and --gateway given before the subcommand.
    fn outer_target(&self) -> Target {
        Target {
            server: self.server.clone(),
            gateway: self.gateway.clone(),
        }
    }

    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self.command {
            Some(Command::Bench(args)) => crate::bench::run(&args),
            Some(Command::Ceiling(args)) => crate::ceiling::run(&args).map(|()| ExitCode::SUCCESS),
            Some(Command::OneShot(ref command)) => {
                Ok(crate::oneshot::run(command, &self.outer_target()))
            }
            Some(Command::Chat(ref args)) => Ok(crate::chat::run(args, &self.outer_target())),
            None => Ok(crate::session::run(
                self.server.as_deref(),
                self.gateway.as_deref(),
            )),
        }
    }
}
