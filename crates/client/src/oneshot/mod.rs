//! The one-shot subcommands: `client -s HOST:PORT read 1`, `write 1 TEXT`,
//! `put 5 hello`... One request, its result on stdout (content exactly as
//! stored; for writes, the server's `OK` line), a failure as one line
//! `client <cmd>: <reason>` on stderr and an exit status that says which
//! kind (see [`Status`]). The session and the chat end the same way
//! (`crate::outcome`).

mod args;

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

pub use args::{OneShot, Target, WriteArgs};

use crate::dipc_client::{resolve, Connection, Waited};
use crate::locate;
use crate::outcome::{exit, Failure, Status};

/// Runs `command`; `outer` is the target given before the subcommand.
pub fn run(command: &OneShot, outer: &Target) -> ExitCode {
    exit(
        command.name(),
        execute(command, outer).map(|()| Status::Done),
    )
}

/// Connects to the server `inner` names, else the one `outer` names
/// (asking the gateway once when that is what is given).
pub(crate) fn connect(inner: &Target, outer: &Target) -> Result<Connection, Failure> {
    let target = if inner.server.is_some() || inner.gateway.is_some() {
        inner
    } else {
        outer
    };
    if let Some(server) = &target.server {
        return Ok(Connection::open(server)?);
    }
    let Some(gateway) = &target.gateway else {
        return Err(Failure::NoTarget);
    };
    let server = locate::ask_once(resolve(gateway)?)?;
    Ok(Connection::connect(server)?)
}

/// The content of a write: the text, or the file's bytes (`-`: stdin).
fn write_content(args: &WriteArgs) -> Result<Vec<u8>, Failure> {
    match (&args.text, &args.file) {
        (Some(text), _) => Ok(text.as_bytes().to_vec()),
        (None, Some(path)) if path == Path::new("-") => {
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|cause| Failure::Input {
                    path: PathBuf::from("stdin"),
                    cause,
                })?;
            Ok(bytes)
        }
        (None, Some(path)) => fs::read(path).map_err(|cause| Failure::Input {
            path: path.clone(),
            cause,
        }),
        // clap requires one of them.
        (None, None) => Ok(Vec::new()),
    }
}

fn print(parts: &[&[u8]]) -> Result<(), Failure> {
    let mut out = io::stdout().lock();
    for part in parts {
        out.write_all(part).map_err(Failure::Stdout)?;
    }
    out.flush().map_err(Failure::Stdout)
}

/// A reply line, as the server sent it.
fn print_line(line: &str) -> Result<(), Failure> {
    print(&[line.as_bytes(), b"\n"])
}

fn execute(command: &OneShot, outer: &Target) -> Result<(), Failure> {
    // The input is read before connecting: a missing file costs no
    // connection.
    let content = match command {
        OneShot::Write(args) => Some(write_content(args)?),
        _ => None,
    };
    let mut connection = connect(command.target(), outer)?;
    match command {
        OneShot::Read {
            mailbox, header, ..
        } => {
            let content = connection.read(*mailbox)?;
            print_content(&content.header, &content.data, *header)
        }
        OneShot::Write(args) => {
            let stored = connection.write(args.mailbox, content.as_deref().unwrap_or_default())?;
            print_line(&stored.line)
        }
        OneShot::Append { mailbox, text, .. } => {
            let stored = connection.append(*mailbox, text.as_bytes())?;
            print_line(&stored.line)
        }
        OneShot::Wait {
            mailbox,
            version,
            timeout_ms,
            header,
            ..
        } => match connection.wait(*mailbox, *version, *timeout_ms)? {
            Waited::Changed(content) => print_content(&content.header, &content.data, *header),
            Waited::TimedOut { mailbox, version } => Err(Failure::TimedOut { mailbox, version }),
        },
        OneShot::Put { key, value, .. } => print_line(&connection.put(*key, value.as_bytes())?),
        OneShot::Get { key, .. } => print(&[&connection.get(*key)?]),
        OneShot::Del { key, .. } => print_line(&connection.del(*key)?),
        OneShot::Stat { mailbox, .. } => print_line(&connection.stat(*mailbox)?),
    }
}

fn print_content(header_line: &str, data: &[u8], header: bool) -> Result<(), Failure> {
    if header {
        print(&[header_line.as_bytes(), b"\n", data])
    } else {
        print(&[data])
    }
}
