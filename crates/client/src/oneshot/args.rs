//! The one-shot subcommands' command lines: one request each.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::dipc_client::MAX_WAIT_MS;

/// Where the request goes. Also accepted before the subcommand
/// (`client -s HOST:PORT read 1`); given here, it wins.
#[derive(Debug, Clone, Default, Args)]
pub struct Target {
    /// The server to send the request to
    #[arg(short, long, value_name = "HOST:PORT", conflicts_with = "gateway")]
    pub server: Option<String>,
    /// A gateway that hands out the server (asked once)
    #[arg(short, long, value_name = "HOST:PORT")]
    pub gateway: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OneShot {
    /// Print mailbox M's content on stdout: exactly its bytes, nothing added
    Read {
        /// The mailbox, 1..k
        #[arg(value_name = "M")]
        mailbox: u32,
        /// Print the server's header line (with the version) before the content
        #[arg(long)]
        header: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Replace mailbox M's content with TEXT (as given, no newline added) or
    /// a file's bytes; prints the server's `OK wrote ...` line
    Write(WriteArgs),
    /// Add TEXT and a newline to mailbox M (the oldest lines are dropped when
    /// it is full); prints the server's `OK appended ...` line
    Append {
        /// The mailbox, 1..k
        #[arg(value_name = "M")]
        mailbox: u32,
        /// One line: no newline, carriage return or NUL
        #[arg(allow_hyphen_values = true)]
        text: OsString,
        #[command(flatten)]
        target: Target,
    },
    /// Wait until mailbox M's version is over VERSION, then print its
    /// content as read does; exit status 3 if the timeout passes first
    Wait {
        /// The mailbox, 1..k
        #[arg(value_name = "M")]
        mailbox: u32,
        /// Wait for a version over this one (at once when the mailbox is past it)
        version: u64,
        /// How long the server waits [server's default: 30000]
        #[arg(long, value_name = "MS",
              value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WAIT_MS)))]
        timeout_ms: Option<u32>,
        /// Print the server's header line (with the version) before the content
        #[arg(long)]
        header: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Store VALUE under the integer KEY, if the key is new; prints `OK`
    Put {
        /// A 64-bit signed integer
        #[arg(allow_negative_numbers = true)]
        key: i64,
        /// One line: no newline, carriage return or NUL
        #[arg(allow_hyphen_values = true)]
        value: OsString,
        #[command(flatten)]
        target: Target,
    },
    /// Print the value stored under KEY: exactly its bytes, nothing added
    Get {
        /// A 64-bit signed integer
        #[arg(allow_negative_numbers = true)]
        key: i64,
        #[command(flatten)]
        target: Target,
    },
    /// Remove KEY and its value; prints `OK`
    Del {
        /// A 64-bit signed integer
        #[arg(allow_negative_numbers = true)]
        key: i64,
        #[command(flatten)]
        target: Target,
    },
    /// Print the server's figures (one `OK key=value ...` line), or mailbox
    /// M's length and version
    Stat {
        /// Only this mailbox: `OK mailbox <m>: <len> bytes, version <v>`
        #[arg(value_name = "M")]
        mailbox: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// The mailbox, 1..k
    #[arg(value_name = "M")]
    pub mailbox: u32,
    /// The content
    #[arg(
        allow_hyphen_values = true,
        required_unless_present = "file",
        conflicts_with = "file"
    )]
    pub text: Option<OsString>,
    /// Take the content from this file's bytes, any bytes (`-`: stdin)
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub target: Target,
}

impl OneShot {
    pub fn name(&self) -> &'static str {
        match self {
            OneShot::Read { .. } => "read",
            OneShot::Write(_) => "write",
            OneShot::Append { .. } => "append",
            OneShot::Wait { .. } => "wait",
            OneShot::Put { .. } => "put",
            OneShot::Get { .. } => "get",
            OneShot::Del { .. } => "del",
            OneShot::Stat { .. } => "stat",
        }
    }

    pub fn target(&self) -> &Target {
        match self {
            OneShot::Read { target, .. }
            | OneShot::Append { target, .. }
            | OneShot::Wait { target, .. }
            | OneShot::Put { target, .. }
            | OneShot::Get { target, .. }
            | OneShot::Del { target, .. }
            | OneShot::Stat { target, .. } => target,
            OneShot::Write(args) => &args.target,
        }
    }
}
