//! Raising the open-file limit: a bench with a few thousand connections, or a
//! ceiling server serving them, needs more descriptors than the usual soft
//! limit of 1024.

use anyhow::{bail, Context};
use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Makes sure at least `wanted` descriptors can be open, raising the soft
/// limit (never above the hard one, which only root could raise).
pub fn ensure_open_files(wanted: u64) -> anyhow::Result<()> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft >= wanted {
        return Ok(());
    }
    if hard < wanted {
        bail!(
            "{wanted} open files are needed but the hard limit is {hard} \
             (raise it with `ulimit -Hn` as root, or use fewer connections)"
        );
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
        .with_context(|| format!("raising the open-file soft limit from {soft} to {hard}"))
}

/// Raises the soft limit to the hard one, as far as it goes; for servers,
/// which cannot know how many clients will come. Failure is not fatal.
pub fn raise_open_files() {
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}
