//! The gateway's library: the wire format every party speaks (`wire`) and
//! the directory of servers (`registry`). The binary (`main.rs`) adds the
//! UDP loop, the health checks and the daemon around them; dipc and the
//! client use `wire` to talk to a gateway.

pub mod registry;
pub mod wire;
