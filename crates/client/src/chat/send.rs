//! The sending side of a chat: a thread that appends each line it is given
//! as `HH:MM:SS NICK: text`, and the Enter key that gives it the line
//! being typed.

use std::sync::mpsc::{self, Sender};
use std::thread::{self, JoinHandle};

use rustyline::{Cmd, ConditionalEventHandler, Event, EventContext, Movement, RepeatCount};

use super::clock;
use super::follow::Lost;
use crate::dipc_client::Connection;
use crate::keyboard::Printer;

/// The line that leaves the chat.
pub const QUIT: &str = "/quit";

/// Starts the thread; it sends until every Sender of the channel is gone,
/// then says `q` to the server.
pub fn start(
    mut connection: Connection,
    mailbox: u32,
    nick: String,
    mut print: Printer,
) -> (Sender<String>, JoinHandle<()>) {
    let (lines, typed) = mpsc::channel::<String>();
    let sender = thread::spawn(move || {
        for line in typed {
            let text = format!("{} {nick}: {line}", clock::hh_mm_ss());
            if let Err(e) = connection.append(mailbox, text.as_bytes()) {
                // A line too long is lost, the chat goes on; a connection
                // lost is said once per line tried.
                print(format!("client chat: not sent: {e}"));
            }
        }
        let _ = connection.quit();
    });
    (lines, sender)
}

/// Enter on a terminal: the line goes to the sender and the editor starts
/// a new one, without ever leaving the editor (so that the lines printed
/// from the waiting thread all take one path, in order); `/quit` ends the
/// editor's line as usual.
/// Once the follower has lost the server, Enter ends the editor's line
/// too, and the chat with it.
#[derive(Clone)]
pub struct SendOnEnter {
    pub lines: Sender<String>,
    pub lost: Lost,
}

impl ConditionalEventHandler for SendOnEnter {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        let line = ctx.line();
        if line.trim() == QUIT || self.lost.is_lost() {
            return None;
        }
        if !line.trim().is_empty() {
            let _ = self.lines.send(line.to_string());
        }
        Some(Cmd::Kill(Movement::WholeBuffer))
    }
}
