//! The lab's `struct message_gw { int type; char address[20]; int port; }`,
//! byte for byte: 28 bytes, native byte order, laid out as a C compiler on
//! this machine lays it out (three members of alignment 4: no padding).
//!
//! Types 0 (a client's request, message A) and 1 (a server's announcement,
//! message 1) are the seed's; the reply (message B) is type 1 with a
//! server's address and port, or type 0 when none is available. dipc adds
//! types 2 to 6 for availability and status (docs/prog3.md, Gateway).

use std::net::Ipv4Addr;

use thiserror::Error;

/// Bytes in a message.
pub const MESSAGE_LEN: usize = 28;
/// Bytes of the address field, its NUL included.
pub const ADDRESS_LEN: usize = 20;

/// What a message asks or says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// From a client: which server? (message A). As a reply: none available.
    Request,
    /// From a server: here I am (message 1). As a reply: this server.
    Announce,
    /// From a server: I cannot take a connection now.
    Busy,
    /// From a server: I can take connections again.
    Free,
    /// From a server, periodically: still here. A server that has sent one
    /// expires when it falls silent for the gateway's TTL.
    Heartbeat,
    /// From a server that stops: forget me.
    Withdraw,
    /// From anyone: the gateway's servers and counters, as text.
    Status,
}

impl Kind {
    pub fn code(self) -> i32 {
        match self {
            Kind::Request => 0,
            Kind::Announce => 1,
            Kind::Busy => 2,
            Kind::Free => 3,
            Kind::Heartbeat => 4,
            Kind::Withdraw => 5,
            Kind::Status => 6,
        }
    }

    pub fn from_code(code: i32) -> Option<Kind> {
        Some(match code {
            0 => Kind::Request,
            1 => Kind::Announce,
            2 => Kind::Busy,
            3 => Kind::Free,
            4 => Kind::Heartbeat,
            5 => Kind::Withdraw,
            6 => Kind::Status,
            _ => return None,
        })
    }

    /// Whether a server sends it (and so names itself in it).
    pub fn is_from_server(self) -> bool {
        matches!(
            self,
            Kind::Announce | Kind::Busy | Kind::Free | Kind::Heartbeat | Kind::Withdraw
        )
    }
}

/// Why a datagram is not a message. Each is counted and dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BadDatagram {
    #[error("{0} bytes: shorter than the 28 of a message")]
    Short(usize),
    #[error("{0} bytes: longer than the 28 of a message")]
    Long(usize),
    #[error("unknown type {0}")]
    UnknownType(i32),
    #[error("a server's address field without a NUL")]
    AddressWithoutNul,
}

/// One message, as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message {
    pub kind: Kind,
    pub address: [u8; ADDRESS_LEN],
    /// An int in host byte order, kept exactly as sent: lab servers send
    /// 3000 + getpid(), which can exceed 65535.
    pub port: i32,
}

impl Message {
    /// A message with `address` written as a NUL-terminated string (empty:
    /// all zeros, so that the gateway takes the datagram's source).
    pub fn new(kind: Kind, address: Option<Ipv4Addr>, port: i32) -> Message {
        let mut field = [0u8; ADDRESS_LEN];
        if let Some(ip) = address {
            let text = ip.to_string();
            // A dotted IPv4 address is at most 15 characters: it fits.
            field[..text.len()].copy_from_slice(text.as_bytes());
        }
        Message {
            kind,
            address: field,
            port,
        }
    }

    /// The gateway's answer when no server is available: type 0.
    pub fn none_available() -> Message {
        Message::new(Kind::Request, None, 0)
    }

    pub fn encode(&self) -> [u8; MESSAGE_LEN] {
        let mut bytes = [0u8; MESSAGE_LEN];
        bytes[..4].copy_from_slice(&self.kind.code().to_ne_bytes());
        bytes[4..4 + ADDRESS_LEN].copy_from_slice(&self.address);
        bytes[4 + ADDRESS_LEN..].copy_from_slice(&self.port.to_ne_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Message, BadDatagram> {
        if bytes.len() < MESSAGE_LEN {
            return Err(BadDatagram::Short(bytes.len()));
        }
        if bytes.len() > MESSAGE_LEN {
            return Err(BadDatagram::Long(bytes.len()));
        }
        let int_at = |at: usize| {
            let mut word = [0u8; 4];
            word.copy_from_slice(&bytes[at..at + 4]);
            i32::from_ne_bytes(word)
        };
        let code = int_at(0);
        let kind = Kind::from_code(code).ok_or(BadDatagram::UnknownType(code))?;
        let mut address = [0u8; ADDRESS_LEN];
        address.copy_from_slice(&bytes[4..4 + ADDRESS_LEN]);
        if kind.is_from_server() && !address.contains(&0) {
            return Err(BadDatagram::AddressWithoutNul);
        }
        Ok(Message {
            kind,
            address,
            port: int_at(4 + ADDRESS_LEN),
        })
    }

    /// The address field when it holds a NUL-terminated dotted IPv4 address
    /// other than 0.0.0.0; otherwise (zeros, garbage, a name) None, and the
    /// gateway takes the datagram's source address, as the lab's do.
    pub fn address_field(&self) -> Option<Ipv4Addr> {
        let end = self.address.iter().position(|&b| b == 0)?;
        let text = std::str::from_utf8(&self.address[..end]).ok()?;
        let ip: Ipv4Addr = text.parse().ok()?;
        (!ip.is_unspecified()).then_some(ip)
    }

    /// The TCP port to reach the server on: the int's low 16 bits, as the
    /// lab's clients take it (`htons(port)`).
    pub fn tcp_port(port: i32) -> u16 {
        (port as u32 & 0xffff) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_the_c_struct() {
        let m = Message::new(Kind::Announce, Some(Ipv4Addr::new(10, 0, 0, 7)), 70_000);
        let bytes = m.encode();
        assert_eq!(bytes.len(), 28);
        assert_eq!(&bytes[..4], &1i32.to_ne_bytes());
        assert_eq!(&bytes[4..12], b"10.0.0.7");
        assert!(bytes[12..24].iter().all(|&b| b == 0));
        assert_eq!(&bytes[24..], &70_000i32.to_ne_bytes());
        assert_eq!(Message::decode(&bytes), Ok(m));
        assert_eq!(Message::tcp_port(70_000), 4_464, "70,000 - 65,536");
    }

    #[test]
    fn bad_datagrams_are_named() {
        let good = Message::new(Kind::Request, None, 0).encode();
        assert_eq!(Message::decode(&good[..27]), Err(BadDatagram::Short(27)));
        assert_eq!(
            Message::decode(&[good.as_slice(), &[0]].concat()),
            Err(BadDatagram::Long(29))
        );
        let mut unknown = good;
        unknown[..4].copy_from_slice(&99i32.to_ne_bytes());
        assert_eq!(Message::decode(&unknown), Err(BadDatagram::UnknownType(99)));
        let mut no_nul = Message::new(Kind::Announce, None, 5000).encode();
        no_nul[4..24].fill(b'x');
        assert_eq!(
            Message::decode(&no_nul),
            Err(BadDatagram::AddressWithoutNul)
        );
        // A client's request may carry anything in its address field.
        let mut request = good;
        request[4..24].fill(b'x');
        assert!(Message::decode(&request).is_ok());
    }

    #[test]
    fn the_address_field_is_used_only_when_it_is_an_address() {
        let with = |text: &[u8]| {
            let mut m = Message::new(Kind::Announce, None, 1);
            m.address[..text.len()].copy_from_slice(text);
            m.address_field()
        };
        assert_eq!(with(b"127.0.0.1"), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(with(b""), None);
        assert_eq!(with(b"0.0.0.0"), None);
        assert_eq!(with(b"localhost"), None);
        assert_eq!(with(b"1.2.3.4.5"), None);
        assert_eq!(with(&[0xff, 0xfe, b'1']), None);
    }
}
