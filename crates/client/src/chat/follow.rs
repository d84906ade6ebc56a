//! The waiting side of a chat: its own connection, a `wait` for each new
//! version, the new lines printed as they come; when the connection fails,
//! the error is left in [`Lost`] for the typing side to end the chat with.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use super::lines;
use crate::dipc_client::{ClientError, Connection, Waited, DEFAULT_WAIT_MS};
use crate::keyboard::Printer;
use crate::outcome::Failure;

/// How long one wait lasts before it is asked again: the server's default.
const WAIT_MS: u32 = DEFAULT_WAIT_MS;

/// Why the follower stopped, once it has: shared with the typing side,
/// which ends the chat when it sees it.
#[derive(Clone, Default)]
pub struct Lost(Arc<Mutex<Option<ClientError>>>);

impl Lost {
    pub fn is_lost(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn set(&self, error: ClientError) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
    }

    pub fn take(&self) -> Option<ClientError> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

pub struct Follower {
    connection: Connection,
    mailbox: u32,
    /// The version shown so far, and its content.
    version: u64,
    shown: Vec<u8>,
}

impl Follower {
    /// Connects and checks that the server knows `wait`; the mailbox's
    /// lines so far come with it.
    pub fn start(server: SocketAddr, mailbox: u32) -> Result<(Follower, Vec<String>), Failure> {
        let mut connection = Connection::connect(server)?;
        let content = connection.read(mailbox)?;
        match connection.wait(mailbox, content.version, Some(1)) {
            Err(ClientError::Refusal(reason)) => return Err(Failure::NoChat { server, reason }),
            // Lines appended since the read come with the first wait of
            // follow().
            other => {
                other?;
            }
        }
        let history = lines::lines(&content.data);
        let follower = Follower {
            connection,
            mailbox,
            version: content.version,
            shown: content.data,
        };
        Ok((follower, history))
    }

    /// Prints new lines as they come, until the connection fails: then the
    /// error goes to `lost`, and the user is told once that the chat is
    /// over.
    pub fn follow(&mut self, mut print: Printer, lost: &Lost) {
        loop {
            match self
                .connection
                .wait(self.mailbox, self.version, Some(WAIT_MS))
            {
                Ok(Waited::Changed(content)) => {
                    let added = content.version.saturating_sub(self.version);
                    for line in lines::update(&self.shown, &content.data, added) {
                        print(line);
                    }
                    self.version = content.version;
                    self.shown = content.data;
                }
                Ok(Waited::TimedOut { .. }) => {}
                Err(e) => {
                    lost.set(e);
                    print(format!(
                        "-- {} is lost: the chat is over (Enter or Ctrl-D leaves) --",
                        self.connection.addr()
                    ));
                    return;
                }
            }
        }
    }
}
