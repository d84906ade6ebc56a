//! dipc's client side, as a library so that the integration tests can drive
//! the reply parsers directly: the interactive session (`client` alone), the
//! one-shot requests (`client read 1`...), the chat (`client chat`), the
//! load generator (`client bench`) and the benchmark's ceiling servers
//! (`client ceiling`), with `dipc_client`, the blocking protocol client
//! they share, `locate` (a server from the gateway) and `outcome` (how they
//! end: exit statuses). `main.rs` only parses the command line and
//! dispatches.

pub mod bench;
pub mod ceiling;
pub mod chat;
pub mod cli;
pub mod dipc_client;
pub mod keyboard;
pub mod limits;
pub mod locate;
pub mod oneshot;
pub mod outcome;
pub mod protocol;
pub mod say;
pub mod session;
