//! The daemon's log: one line per event, written to stderr with a single
//! write() (so lines from the supervisor and its workers never interleave).
//! Before detaching, stderr is the terminal; after, it is the log file.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};

static SUPERVISOR_PID: AtomicI32 = AtomicI32::new(0);

/// Records which process is the supervisor, so each line names its role.
pub fn set_supervisor_pid(pid: i32) {
    SUPERVISOR_PID.store(pid, Ordering::Relaxed);
}

/// Installs the logger; each line names `program`. `DIPC_LOG` (env_logger
/// syntax) overrides the level.
pub fn init(program: &'static str) {
    let mut builder = env_logger::Builder::new();
    builder
        .filter_level(log::LevelFilter::Info)
        .parse_env("DIPC_LOG")
        .format(move |buf, record| {
            let pid = std::process::id() as i32;
            let role = if pid == SUPERVISOR_PID.load(Ordering::Relaxed) {
                "supervisor"
            } else {
                "worker"
            };
            writeln!(
                buf,
                "{} {program}[{pid}] {role} {}: {}",
                buf.timestamp_seconds(),
                record.level(),
                record.args()
            )
        });
    let _ = builder.try_init();
}
