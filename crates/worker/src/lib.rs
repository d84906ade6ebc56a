//! The dipc worker process: it takes the accept lock, accepts, and serves
//! its clients, one at a time (prefork) or many from one epoll loop (event).
//!
//! - [`auth`]: the shared secret of `--auth-file`.
//! - [`line_end`]: where a request line ends.
//! - [`request`]: parsing one request line (pure).
//! - [`reply_line`]: a mailbox reply's first line, and a worker's memory of
//!   the lines it built.
//! - [`session`]: one connection's protocol state machine: framing, requests,
//!   replies, executed against the segment (no I/O).
//! - [`connection`]: the socket loop that feeds a session and writes replies.
//! - [`client`]: one accepted client from accept to close, in every model.
//! - [`pool`]: a pool worker's life: the accept lock and the accept loop
//!   (`--model prefork`).
//! - [`threads`]: one process, a thread per client (`--model thread`).
//! - [`upper_echo`]: the seed's upper-case echo, the other protocol a
//!   connection can speak (`echo-server`).
//! - [`waits`]: a worker slot's `wait` registrations and its eventfd.
//! - [`event`]: a pool worker serving many clients from one epoll loop
//!   (`--model event`).
//!
//! `--model fork` needs nothing more: the supervisor accepts and forks a
//! child that serves one client with [`ServeContext::serve_client`].

pub mod auth;
pub mod client;
pub mod connection;
pub mod event;
pub mod line_end;
pub mod pool;
pub mod reply_line;
pub mod request;
pub mod session;
pub mod threads;
pub mod upper_echo;
pub mod waits;

pub use client::{ServeContext, Service, WorkerExit};
pub use event::run_event_worker;
pub use pool::{accept_blocking_stream, run_worker, WorkerContext};
pub use session::SessionConfig;
pub use threads::run_thread_server;
