//! The directory: the servers in announcement order, whether each can take
//! a connection now, and a round-robin cursor over them.
//!
//! A server is handed out only when it is *available*: not reporting itself
//! busy, not failing the gateway's TCP health check, and (if it ever sent a
//! heartbeat) not silent for longer than the TTL. Each of those clears by
//! itself: a free report, a passing check, a heartbeat or a new
//! announcement.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

/// A server's identity: its address and its port int exactly as it sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ServerId {
    pub address: Ipv4Addr,
    pub port: i32,
}

/// `server ADDRESS:PORT`, as the log and the status name it.
impl std::fmt::Display for ServerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server {}:{}", self.address, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct Server {
    pub id: ServerId,
    /// It said so (type 2), until it says free (type 3).
    pub busy: bool,
    /// The last health check could not connect.
    pub down: bool,
    /// It sends heartbeats, so its silence means it is gone.
    pub heartbeats: bool,
    /// Silent past the TTL (heartbeating servers only).
    pub expired: bool,
    pub last_heard: Instant,
    /// Times handed to a client.
    pub handed: u64,
    /// Messages received from it.
    pub messages: u64,
    pub checks_failed: u64,
}

impl Server {
    pub fn is_available(&self) -> bool {
        !self.busy && !self.down && !self.expired
    }

    pub fn state(&self) -> &'static str {
        if self.expired {
            "expired"
        } else if self.down {
            "down"
        } else if self.busy {
            "busy"
        } else {
            "available"
        }
    }
}

/// The gateway's counters, for the status reply.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub requests: u64,
    pub handed: u64,
    pub none_available: u64,
    pub server_messages: u64,
    pub bad_datagrams: u64,
    /// Announcements refused because the directory was full.
    pub refused_full: u64,
}

pub struct Registry {
    servers: Vec<Server>,
    /// Where the next round-robin search starts.
    next: usize,
    ttl: Duration,
    capacity: usize,
    pub counters: Counters,
}

impl Registry {
    pub fn new(ttl: Duration, capacity: usize) -> Registry {
        Registry {
            servers: Vec::new(),
            next: 0,
            ttl,
            capacity,
            counters: Counters::default(),
        }
    }

    pub fn servers(&self) -> &[Server] {
        &self.servers
    }

    fn find(&mut self, id: ServerId) -> Option<&mut Server> {
        self.servers.iter_mut().find(|s| s.id == id)
    }

    /// The server `id`, registered at the end of the order if new (None
    /// when the directory is full).
    fn entry(&mut self, id: ServerId, now: Instant) -> Option<&mut Server> {
        self.counters.server_messages += 1;
        let index = match self.servers.iter().position(|s| s.id == id) {
            Some(i) => i,
            None if self.servers.len() >= self.capacity => {
                self.counters.refused_full += 1;
                return None;
            }
            None => {
                self.servers.push(Server {
                    id,
                    busy: false,
                    down: false,
                    heartbeats: false,
                    expired: false,
                    last_heard: now,
                    handed: 0,
                    messages: 0,
                    checks_failed: 0,
                });
                log::info!("{id} registered");
                self.servers.len() - 1
            }
        };
        let server = &mut self.servers[index];
        server.messages += 1;
        server.last_heard = now;
        if server.expired {
            log::info!("{id} heard from again");
        }
        server.expired = false;
        Some(server)
    }

    /// Message 1: here I am. A server that announces again is not
    /// duplicated; it is alive, so a failed check no longer counts.
    pub fn announce(&mut self, id: ServerId, now: Instant) {
        if let Some(s) = self.entry(id, now) {
            s.down = false;
        }
    }

    pub fn heartbeat(&mut self, id: ServerId, now: Instant) {
        if let Some(s) = self.entry(id, now) {
            s.heartbeats = true;
        }
    }

    pub fn set_busy(&mut self, id: ServerId, busy: bool, now: Instant) {
        if let Some(s) = self.entry(id, now) {
            s.busy = busy;
        }
    }

    pub fn withdraw(&mut self, id: ServerId) {
        self.counters.server_messages += 1;
        if let Some(index) = self.servers.iter().position(|s| s.id == id) {
            self.servers.remove(index);
            if index < self.next {
                self.next -= 1;
            }
            log::info!("{id} withdrew");
        }
    }

    /// Message A: the next available server after the last one handed out,
    /// in announcement order.
    pub fn pick(&mut self) -> Option<ServerId> {
        self.counters.requests += 1;
        let n = self.servers.len();
        for step in 0..n {
            let index = (self.next + step) % n;
            if self.servers[index].is_available() {
                self.next = (index + 1) % n;
                let server = &mut self.servers[index];
                server.handed += 1;
                self.counters.handed += 1;
                return Some(server.id);
            }
        }
        self.counters.none_available += 1;
        None
    }

    /// Heartbeating servers silent for longer than the TTL expire.
    pub fn expire(&mut self, now: Instant) {
        for s in &mut self.servers {
            if s.heartbeats && !s.expired && now.duration_since(s.last_heard) > self.ttl {
                s.expired = true;
                log::warn!(
                    "{} silent for over {:.1} s: expired",
                    s.id,
                    self.ttl.as_secs_f64()
                );
            }
        }
    }

    /// Every registered server, for a round of health checks.
    pub fn check_targets(&self) -> Vec<ServerId> {
        self.servers.iter().map(|s| s.id).collect()
    }

    /// A health check's result (the server may have withdrawn meanwhile).
    pub fn checked(&mut self, id: ServerId, reachable: bool) {
        if let Some(s) = self.find(id) {
            if !reachable {
                s.checks_failed += 1;
                if !s.down {
                    log::warn!("{id} refuses connections: down");
                }
            } else if s.down {
                log::info!("{id} accepts connections again");
            }
            s.down = !reachable;
        }
    }

    /// The status reply: the counters, then one line per server, at most
    /// `max_servers` of them (then how many more there are).
    pub fn status(&self, now: Instant, max_servers: usize) -> String {
        let c = &self.counters;
        let mut text = format!(
            "gateway servers={} available={} requests={} handed={} none_available={} \
             server_messages={} bad_datagrams={} refused_full={}\n",
            self.servers.len(),
            self.servers.iter().filter(|s| s.is_available()).count(),
            c.requests,
            c.handed,
            c.none_available,
            c.server_messages,
            c.bad_datagrams,
            c.refused_full
        );
        for s in self.servers.iter().take(max_servers) {
            let _ = writeln!(
                text,
                "{} state={} handed={} messages={} heartbeats={} last_heard_ms={} checks_failed={}",
                s.id,
                s.state(),
                s.handed,
                s.messages,
                if s.heartbeats { "yes" } else { "no" },
                now.duration_since(s.last_heard).as_millis(),
                s.checks_failed
            );
        }
        if self.servers.len() > max_servers {
            let _ = writeln!(
                text,
                "... {} more servers",
                self.servers.len() - max_servers
            );
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(last: u8, port: i32) -> ServerId {
        ServerId {
            address: Ipv4Addr::new(127, 0, 0, last),
            port,
        }
    }

    #[test]
    fn round_robin_in_announcement_order_without_duplicates() {
        let now = Instant::now();
        let mut r = Registry::new(Duration::from_secs(5), 16);
        assert_eq!(r.pick(), None);
        r.announce(id(1, 10), now);
        r.announce(id(2, 20), now);
        r.announce(id(1, 10), now);
        r.announce(id(3, 30), now);
        assert_eq!(r.servers().len(), 3);
        let picks: Vec<i32> = (0..6).map(|_| r.pick().expect("a server").port).collect();
        assert_eq!(picks, [10, 20, 30, 10, 20, 30]);
        assert_eq!(r.counters.none_available, 1);
    }

    #[test]
    fn unavailable_servers_are_skipped_and_come_back() {
        let now = Instant::now();
        let mut r = Registry::new(Duration::from_secs(5), 16);
        r.announce(id(1, 10), now);
        r.announce(id(2, 20), now);
        r.heartbeat(id(3, 30), now);
        r.set_busy(id(1, 10), true, now);
        r.checked(id(2, 20), false);
        assert_eq!(r.pick().map(|s| s.port), Some(30));
        assert_eq!(r.pick().map(|s| s.port), Some(30));
        r.expire(now + Duration::from_secs(6));
        assert_eq!(r.pick(), None, "busy, down and expired");
        r.set_busy(id(1, 10), false, now);
        r.checked(id(2, 20), true);
        r.heartbeat(id(3, 30), now + Duration::from_secs(7));
        let picks: Vec<i32> = (0..3).map(|_| r.pick().expect("a server").port).collect();
        assert_eq!(picks, [10, 20, 30]);
        // Non-heartbeating servers never expire; they have health checks.
        r.expire(now + Duration::from_secs(60));
        assert_eq!(r.servers()[0].state(), "available");
        assert_eq!(r.servers()[2].state(), "expired");
    }

    #[test]
    fn withdrawal_keeps_the_rotation() {
        let now = Instant::now();
        let mut r = Registry::new(Duration::from_secs(5), 2);
        r.announce(id(1, 10), now);
        r.announce(id(2, 20), now);
        r.announce(id(3, 30), now);
        assert_eq!(r.counters.refused_full, 1);
        assert_eq!(r.pick().map(|s| s.port), Some(10));
        r.withdraw(id(1, 10));
        assert_eq!(r.pick().map(|s| s.port), Some(20));
        assert_eq!(r.pick().map(|s| s.port), Some(20));
        assert!(r
            .status(now, 8)
            .contains("server 127.0.0.2:20 state=available handed=2"));
        // The status names at most as many servers as asked, then a count.
        r.announce(id(4, 40), now);
        let capped = r.status(now, 1);
        assert_eq!(
            capped.lines().filter(|l| l.starts_with("server ")).count(),
            1
        );
        assert!(capped.ends_with("... 1 more servers\n"), "{capped}");
    }
}
