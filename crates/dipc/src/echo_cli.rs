//! `echo-server`'s command line, checked into the same [`Config`] as dipc's:
//! a prefork pool speaking the seed's upper-case echo, no mailboxes to speak
//! of (one of 1 KiB, which no request can reach) and no key-value store.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shmlib::{FsyncPolicy, Geometry, JournalOptions};
use worker::Service;

use crate::cli::{parse_port, Config, Model, ServerArgs};
use crate::pool_policy::PoolPolicy;

/// echo-server: the seed's simple echo server (seed 000) on dipc's prefork
/// engine. Prints each message it receives and sends back every byte in
/// UPPER CASE. Stop it with `dipcrm <port>`.
#[derive(Debug, Parser)]
#[command(name = "echo-server", version)]
pub struct EchoArgs {
    /// TCP port to serve (1..65535)
    pub port: u64,
    /// A fixed pool of exactly N workers (replaced when they die)
    #[arg(long, value_name = "N", conflicts_with = "max_workers")]
    pub workers: Option<u64>,
    /// The most workers, each serving one client at a time; beyond it
    /// clients wait in the listen backlog (and the gateway hears "busy")
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub max_workers: u64,
    #[command(flatten)]
    pub server: ServerArgs,
}

impl EchoArgs {
    pub fn into_config(self) -> Result<Config, String> {
        let port = parse_port(self.port)?;
        let pool = match self.workers {
            Some(n) => PoolPolicy::fixed(n),
            None => PoolPolicy::dynamic(self.max_workers.min(4), 1, 4, self.max_workers),
        }
        .map_err(|e| e.to_string())?;
        // The segment holds the accept lock and the worker table; its one
        // mailbox is never used.
        let geometry = Geometry::from_kib(1, 1, 1, pool.max_workers as u64)
            .and_then(|g| g.with_keys(0))
            .map_err(|e| e.to_string())?;
        Ok(Config {
            service: Service::UpperEcho,
            geometry,
            model: Model::Prefork,
            pool,
            port,
            lock_timeout: Duration::from_secs(5),
            // Unused: the echo has no lines to complete.
            line_pause: Duration::from_millis(50),
            db_path: PathBuf::new(),
            journal: JournalOptions {
                fsync: FsyncPolicy::No,
                compact_min_bytes: 0,
            },
            secret: None,
            server: self.server.check(Service::UpperEcho, port)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<Config, String> {
        let argv = std::iter::once("echo-server").chain(args.iter().copied());
        EchoArgs::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .into_config()
    }

    #[test]
    fn a_port_is_enough() {
        let c = config(&["3000"]).expect("valid");
        assert_eq!(
            (c.port, c.model, c.service),
            (3000, Model::Prefork, Service::UpperEcho)
        );
        assert_eq!(c.geometry.keys, 0);
        assert_eq!(
            c.server.log_path,
            PathBuf::from("/tmp/echo-server-3000.log")
        );
        assert_eq!(c.program(), "echo-server");
    }

    #[test]
    fn refuses_bad_numbers() {
        for (args, reason) in [
            (vec!["0"], "port must be"),
            (vec!["70000"], "port must be"),
            (vec!["3000", "--workers", "0"], "must be"),
            (
                vec!["3000", "--max-workers", "1000"],
                "--max-workers must be",
            ),
            (vec!["3000", "--grace", "0"], "grace period"),
        ] {
            match config(&args) {
                Ok(_) => panic!("{args:?} accepted"),
                Err(e) => assert!(e.contains(reason), "{args:?}: {e:?}"),
            }
        }
    }
}
