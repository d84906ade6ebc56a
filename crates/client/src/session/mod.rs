//! `client` with no subcommand: seed 000's client grown into an interactive
//! one. It finds a server (--server, or a gateway: --gateway, or the
//! gateway's address and port asked on the keyboard), connects, then reads
//! a request from the keyboard, sends it as typed, and shows the reply,
//! until Ctrl-D, `q`, or the server closing the connection.
//!
//! The server may be dipc or a seed-style server (an upper-case echo, whose
//! replies may lack a newline or end in NUL), so replies are read the
//! generic way: until the server is quiet for a moment. A request whose
//! command is dipc's is done sooner: as soon as what came is one whole dipc
//! reply (a line, or a length line and exactly that many bytes).

mod help;
mod render;

use std::process::ExitCode;
use std::time::Duration;

use crate::dipc_client::{
    reply, wait_reply_deadline, ClientError, Connection, MAX_WAIT_MS, REPLY_WAIT,
};
use crate::keyboard::{self, Keyboard, Typed};
use crate::outcome::{self, Failure, Status};
use crate::{locate, say};

pub use render::{escape, render};

/// A reply is complete once the server has been quiet this long.
const REPLY_QUIET: Duration = Duration::from_millis(150);
/// How long the server has to say goodbye once the user leaves.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);
/// dipc's request words.
const DIPC_COMMANDS: &[&str] = &[
    "r", "read", "w", "write", "append", "wait", "put", "get", "del", "stat", "help", "q", "quit",
    "exit", "bye",
];
/// The request words that end the connection.
const QUIT_COMMANDS: &[&str] = &["q", "quit", "exit", "bye"];

/// Runs the session; its exit status is one-shot's (docs/prog3.md): 0
/// done, 2 usage (a bad address, the keyboard unreadable), 4 no server
/// reached or understood (refused, the gateway silent, the connection
/// lost, no reply in time).
pub fn run(server: Option<&str>, gateway: Option<&str>) -> ExitCode {
    outcome::exit("session", session(server, gateway))
}

fn session(server: Option<&str>, gateway: Option<&str>) -> Result<Status, Failure> {
    let mut keyboard = keyboard::open();
    let Some(server) = locate::find(server, gateway, keyboard.as_mut())? else {
        // The user left at the "no server available" prompt: no server
        // reached.
        return Ok(Status::Unreachable);
    };
    let mut connection = Connection::connect(server)?;
    say::line(&format!(
        "connected to {server}; type help for the commands, Ctrl-D to leave"
    ));
    talk(&mut connection, keyboard.as_mut())
}

/// The read-send-show loop.
fn talk(connection: &mut Connection, keyboard: &mut dyn Keyboard) -> Result<Status, Failure> {
    let server = connection.addr();
    // After a `DATA` reply (a two-step `w <m>`), the next line is the
    // content: sent as it is, whatever it looks like.
    let mut content_next = false;
    loop {
        let line = match keyboard.line("> ").map_err(Failure::Keyboard)? {
            Typed::Line(line) => line,
            Typed::Interrupted => continue,
            Typed::End => {
                say::line("");
                say_goodbye(connection);
                return Ok(Status::Done);
            }
        };
        // The bytes are sent as typed; the text is for looking at them.
        let text = keyboard::text(&line).into_owned();
        // dipc answers nothing to a blank line: nothing to send.
        if text.trim().is_empty() {
            continue;
        }
        keyboard.remember(&text);
        // A content line is no command; its reply is a write's.
        let content = std::mem::take(&mut content_next);
        let command = if content {
            "w".to_string()
        } else {
            command_word(&text)
        };
        if command == "help" {
            say::out(help::HELP);
            say::line("\nThe server's help:");
        } else if command == "wb" {
            say::err_line(&format!(
                "wb needs exact bytes, which a typed line cannot give: use `w {}` (the next line \
                 is the content) or, from a shell, `client -s {server} write <m> --file F`",
                text.split_whitespace().nth(1).unwrap_or("<m>")
            ));
            continue;
        }
        let reply = exchange(
            connection,
            &line,
            first_byte_wait(&text, &command),
            &command,
        )?;
        if reply.is_empty() {
            // Asked to (a server that closes without a Goodbye), or lost.
            if QUIT_COMMANDS.contains(&command.as_str()) {
                say::line(&format!("{server} closed the connection"));
                return Ok(Status::Done);
            }
            return Err(ClientError::Closed { addr: server }.into());
        }
        say::out(&render(&reply));
        if reply.trim_ascii_end() == b"Goodbye" {
            return Ok(Status::Done);
        }
        content_next = reply.starts_with(b"DATA ");
    }
}

/// The request's first word, lower-cased, without a mailbox number glued
/// to it (`r1`).
fn command_word(line: &str) -> String {
    let word = line.split_whitespace().next().unwrap_or("");
    let word = word.to_ascii_lowercase();
    let letters = word.trim_end_matches(|c: char| c.is_ascii_digit());
    if letters.is_empty() {
        word
    } else {
        letters.to_string()
    }
}

/// How long the first byte of the reply may take: a `wait` takes its
/// timeout, the words after the command being the mailbox, the version and
/// the timeout (`wait 1 3 500`, or `wait1 3 500`: the server takes the
/// number glued to the command). A timeout that is no number is waited for
/// as the longest the server takes; the server refuses it at once anyway.
fn first_byte_wait(line: &str, command: &str) -> Duration {
    if command != "wait" {
        return REPLY_WAIT;
    }
    // command_word() lower-cases ASCII letters only: the same length.
    let after = line.trim_start().get(command.len()..).unwrap_or("");
    let ms = after
        .split_whitespace()
        .nth(2)
        .map(|ms| ms.parse().unwrap_or(MAX_WAIT_MS));
    wait_reply_deadline(ms)
}

/// Sends the line and reads the reply, whose first byte may take
/// `first_wait`.
fn exchange(
    connection: &mut Connection,
    line: &[u8],
    first_wait: Duration,
    command: &str,
) -> Result<Vec<u8>, ClientError> {
    let mut request = line.to_vec();
    request.push(b'\n');
    connection.send_raw(&request)?;
    let dipc = DIPC_COMMANDS.contains(&command);
    connection.read_raw(first_wait, REPLY_QUIET, |bytes| {
        dipc && reply::complete_len(bytes) == Some(bytes.len())
    })
}

/// `q`, and whatever the server says to it (dipc: `Goodbye`); a server that
/// is gone already or says nothing is left alone.
fn say_goodbye(connection: &mut Connection) {
    if connection.send_raw(b"q\n").is_err() {
        return;
    }
    if let Ok(reply) = connection.read_raw(GOODBYE_WAIT, REPLY_QUIET, |_| false) {
        if !reply.is_empty() {
            say::out(&render(&reply));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dipc_client::DEFAULT_WAIT_MS;

    #[test]
    fn command_words() {
        assert_eq!(command_word("r1"), "r");
        assert_eq!(command_word("  READ 1"), "read");
        assert_eq!(command_word("wb 1 5"), "wb");
        assert_eq!(command_word("123"), "123");
        assert_eq!(command_word(""), "");
    }

    #[test]
    fn waits_take_their_timeout() {
        assert_eq!(first_byte_wait("r 1", "r"), REPLY_WAIT);
        assert_eq!(
            first_byte_wait("wait 1 3 500", "wait"),
            Duration::from_millis(500) + REPLY_WAIT
        );
        assert_eq!(
            first_byte_wait("wait 1 3", "wait"),
            Duration::from_millis(u64::from(DEFAULT_WAIT_MS)) + REPLY_WAIT
        );
        // The mailbox glued to the command, as the server accepts it.
        assert_eq!(
            first_byte_wait("  WAIT1 3 60000", "wait"),
            Duration::from_millis(60_000) + REPLY_WAIT
        );
        assert_eq!(
            first_byte_wait("wait 1 3 lots", "wait"),
            Duration::from_millis(u64::from(MAX_WAIT_MS)) + REPLY_WAIT
        );
    }
}
