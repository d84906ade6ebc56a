//! A blocking client of dipc's text protocol (docs/prog3.md, "Wire
//! protocol"): one [`Connection`] with a typed method per request, replies
//! parsed exactly (length-prefixed bodies read to the byte), and typed
//! errors. The one-shot subcommands, the interactive session and the chat
//! are built on it.

mod connection;
mod error;
pub mod reply;

pub use connection::{
    resolve, wait_reply_deadline, Connection, Content, Stored, Waited, CONNECT_WAIT,
    DEFAULT_WAIT_MS, MAX_WAIT_MS, REPLY_WAIT,
};
pub use error::ClientError;
