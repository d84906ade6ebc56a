//! `client ceiling`: a server that does no work. It answers every request
//! line with the same fixed bytes, all the complete lines of one read with
//! one write, so that `client bench --protocol fixed` against it measures
//! what the machine, the kernel's TCP and the load generator allow: the
//! ceiling no real server can pass.
//!
//! Two models: `epoll` (one thread, one event loop) and `prefork` (N
//! processes, each serving one connection at a time with blocking I/O, as
//! dipc's own pool does).

mod epoll;
mod prefork;
mod replies;
mod signals;

use std::io::Write;
use std::net::{IpAddr, TcpListener};

use anyhow::Context;
use clap::{Args, ValueEnum};

pub use replies::{count_lines, Replies};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Model {
    /// One thread, one epoll loop, non-blocking sockets
    Epoll,
    /// N forked processes, each a blocking accept-serve loop, one connection at a time
    Prefork,
}

#[derive(Debug, Clone, Args)]
pub struct CeilingArgs {
    /// TCP port to listen on (0: any free port, printed on the first line)
    #[arg(long, value_name = "P")]
    pub port: u16,

    /// How connections are served
    #[arg(long, value_enum, default_value_t = Model::Epoll)]
    pub model: Model,

    /// --model prefork: how many processes (and so connections served at once)
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub processes: u32,

    /// Length of the reply to every request line
    #[arg(long, value_name = "N", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=(1 << 20)))]
    pub reply_bytes: u64,

    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    pub bind: IpAddr,
}

/// Listens, says so on stdout, and serves until SIGTERM or SIGINT.
pub fn run(args: &CeilingArgs) -> anyhow::Result<()> {
    crate::limits::raise_open_files();
    // Blocked before anything else: the signals must wait for the loop
    // (epoll) or the parent's wait (prefork), and forked children inherit
    // the mask, which they undo for themselves.
    let mask = signals::block_stop_signals().context("blocking SIGTERM and SIGINT")?;
    let listener = TcpListener::bind((args.bind, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.bind, args.port))?;
    let port = listener.local_addr().context("getsockname")?.port();
    let replies = Replies::new(args.reply_bytes as usize);
    let shape = match args.model {
        Model::Epoll => "epoll, 1 thread".to_owned(),
        Model::Prefork => format!("prefork, {} processes", args.processes),
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "ceiling: serving port {port} ({shape}, {}-byte replies, on {})",
        args.reply_bytes, args.bind
    )
    .and_then(|()| stdout.flush())
    .context("writing to stdout")?;
    drop(stdout);
    match args.model {
        Model::Epoll => epoll::serve(listener, &replies, &mask),
        Model::Prefork => prefork::serve(listener, &replies, args.processes, &mask),
    }
}
