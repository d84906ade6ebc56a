//! The dipc worker process: it takes the accept lock, accepts one client,
//! releases the lock and serves that client until it leaves.
//!
//! - [`request`]: parsing one request line (pure).
//! - [`session`]: one connection's protocol state machine: framing, requests,
//!   replies, executed against the segment (no I/O).
//! - [`connection`]: the socket loop that feeds a session and writes replies.
//! - [`pool`]: a worker's life: the accept lock and the accept loop.

pub mod connection;
pub mod pool;
pub mod request;
pub mod session;

pub use pool::{run_worker, WorkerContext};
pub use session::SessionConfig;
