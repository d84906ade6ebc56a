//! How a one-shot request, the session and the chat end: the exit
//! [`Status`], the [`Failure`] that maps to it, and [`exit`], which says the
//! failure on stderr as one line and returns the status.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::dipc_client::ClientError;
use crate::locate::GatewayError;
use crate::say;

/// The exit statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Done = 0,
    /// The server answered `ERR`.
    Refused = 1,
    /// The command line or its input is wrong (clap's usage errors exit 2
    /// too: a bad option, address, file or --nick; the keyboard unreadable),
    /// or stdout cannot be written.
    Usage = 2,
    /// `wait`: the timeout passed with no new version.
    TimedOut = 3,
    /// No server could be reached or understood: cannot connect, no server
    /// from the gateway, connection lost, no reply in time, a reply that is
    /// not dipc's.
    Unreachable = 4,
}

/// Why a one-shot request, a session or a chat ended badly; its status()
/// is the exit status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("which server? give --server HOST:PORT or --gateway HOST:PORT")]
    NoTarget,
    #[error("cannot read {}: {cause}", path.display())]
    Input { path: PathBuf, cause: io::Error },
    #[error("writing stdout: {0}")]
    Stdout(io::Error),
    #[error("timed out: mailbox {mailbox} is at version {version}")]
    TimedOut { mailbox: u32, version: u64 },
    /// A bad argument or typed answer found here (a --nick, a gateway
    /// port).
    #[error("{0}")]
    Usage(String),
    /// The keyboard (stdin) could not be read.
    #[error("{0:#}")]
    Keyboard(anyhow::Error),
    /// A chat's server answered `wait` with ERR.
    #[error(
        "{server} cannot hold a chat: it answered `wait` with {reason:?} (a chat needs dipc's \
         append and wait requests)"
    )]
    NoChat { server: SocketAddr, reason: String },
    /// A chat's follower lost its server.
    #[error("no longer following mailbox {mailbox}: {cause}")]
    Following { mailbox: u32, cause: ClientError },
}

impl Failure {
    pub(crate) fn status(&self) -> Status {
        match self {
            Failure::Client(e) if e.is_refusal() => Status::Refused,
            Failure::Client(e) if e.is_argument() => Status::Usage,
            Failure::Client(_) | Failure::Gateway(_) | Failure::Following { .. } => {
                Status::Unreachable
            }
            Failure::NoTarget
            | Failure::Input { .. }
            | Failure::Stdout(_)
            | Failure::Usage(_)
            | Failure::Keyboard(_) => Status::Usage,
            Failure::TimedOut { .. } => Status::TimedOut,
            Failure::NoChat { .. } => Status::Refused,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> ExitCode {
        ExitCode::from(status as u8)
    }
}

/// The exit status of a run called `name` (`read`, `chat`, `session`...)
/// that ended with `result`; a failure is said on stderr first, as
/// `client <name>: <reason>`.
pub(crate) fn exit(name: &str, result: Result<Status, Failure>) -> ExitCode {
    match result {
        Ok(status) => status.into(),
        Err(failure) => {
            say::err_line(&format!("client {name}: {failure}"));
            failure.status().into()
        }
    }
}
