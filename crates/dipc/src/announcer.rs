//! `--gateway HOST:PORT`: keeps a gateway (crates/gateway) told about this
//! daemon, in the lab's 28-byte `message_gw` datagrams. The supervisor owns
//! it and calls it from its loop: an announcement at start, a heartbeat
//! every second (the gateway expires a heartbeating server that falls
//! silent), busy when no worker could take a new client and free when one
//! can again, and a withdrawal when the daemon stops. UDP is fire and
//! forget: a gateway that is down or restarted costs nothing here, and the
//! next heartbeat registers the daemon again.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use gateway::wire::{Kind, Message};

const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

pub struct Announcer {
    socket: UdpSocket,
    gateway: SocketAddr,
    /// The address put in the messages; None: the gateway takes the source.
    advertise: Option<Ipv4Addr>,
    port: i32,
    /// What the gateway was last told.
    busy: bool,
    next_heartbeat: Instant,
    /// A send failed and that was logged (logged again once it works).
    failing: bool,
}

impl Announcer {
    pub fn new(
        gateway: SocketAddr,
        advertise: Option<Ipv4Addr>,
        port: u16,
    ) -> io::Result<Announcer> {
        let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))?;
        socket.set_nonblocking(true)?;
        Ok(Announcer {
            socket,
            gateway,
            advertise,
            port: i32::from(port),
            busy: false,
            next_heartbeat: Instant::now(),
            failing: false,
        })
    }

    fn send(&mut self, kind: Kind) {
        let message = Message::new(kind, self.advertise, self.port).encode();
        match self.socket.send_to(&message, self.gateway) {
            Ok(_) if self.failing => {
                self.failing = false;
                log::info!("gateway {}: reachable again", self.gateway);
            }
            Ok(_) => {}
            Err(e) if !self.failing => {
                self.failing = true;
                log::warn!("gateway {}: cannot send: {e}", self.gateway);
            }
            Err(_) => {}
        }
    }

    /// Once serving.
    pub fn announce(&mut self) {
        self.send(Kind::Announce);
        log::info!("announced to the gateway at {}", self.gateway);
    }

    /// Each turn of the supervisor's loop: tells a change of availability at
    /// once, and heartbeats once a second.
    pub fn tick(&mut self, busy: bool) {
        if busy != self.busy {
            self.busy = busy;
            self.send(if busy { Kind::Busy } else { Kind::Free });
        }
        let now = Instant::now();
        if now >= self.next_heartbeat {
            self.next_heartbeat = now + HEARTBEAT_INTERVAL;
            self.send(Kind::Heartbeat);
        }
    }

    /// When the next heartbeat is due.
    pub fn next_due(&self) -> Instant {
        self.next_heartbeat
    }

    /// When the daemon stops: the gateway forgets it at once.
    pub fn withdraw(&mut self) {
        self.send(Kind::Withdraw);
        log::info!("withdrawn from the gateway at {}", self.gateway);
    }
}
