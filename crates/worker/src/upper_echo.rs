//! The seed's "simple echo server" (seed 000): it prints each message it
//! receives and sends it back in UPPER CASE.
//!
//! Lab clients send a string with its NUL, or fixed 100- or 108-byte
//! zero-padded frames, and then wait for exactly as many bytes back; so the
//! reply is every byte received, in order, with ASCII letters upper-cased:
//! nothing added, nothing dropped, no framing of its own.

use std::net::SocketAddr;

use crate::connection::Protocol;
use crate::request::shown;
use crate::session::{Flow, OUT_HIGH_WATER};

/// One client's echo.
pub struct UpperEcho {
    peer: SocketAddr,
    reads: u64,
}

impl UpperEcho {
    pub fn new(peer: SocketAddr) -> UpperEcho {
        UpperEcho { peer, reads: 0 }
    }

    /// Prints the strings in `piece` (a frame's zero padding and line ends
    /// separate them; they are not part of a message).
    fn print(&self, piece: &[u8]) {
        let messages = piece
            .split(|&b| b == 0 || b == b'\n')
            .map(|m| m.strip_suffix(b"\r").unwrap_or(m))
            .filter(|m| !m.is_empty());
        for message in messages {
            log::info!("{}: {}", self.peer, shown(message));
        }
    }
}

impl Protocol for UpperEcho {
    fn feed_some(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Flow) {
        let piece = &input[..input.len().min(OUT_HIGH_WATER)];
        self.print(piece);
        out.extend(piece.iter().map(u8::to_ascii_uppercase));
        self.reads += 1;
        (piece.len(), Flow::Continue)
    }

    fn on_pause(&mut self, _out: &mut Vec<u8>) -> Flow {
        Flow::Continue
    }

    fn on_eof(&mut self, _out: &mut Vec<u8>) {}

    fn in_request(&self) -> bool {
        false
    }

    fn has_partial_line(&self) -> bool {
        false
    }

    /// Reads answered: one message each, as lab clients send them.
    fn requests(&self) -> u64 {
        self.reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_every_byte_with_letters_upper_cased() {
        let mut echo = UpperEcho::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let mut frame = b"hello, World 42 \xc3\xa9\r\n".to_vec();
        frame.resize(108, 0);
        let mut out = Vec::new();
        assert_eq!(echo.feed_some(&frame, &mut out), (108, Flow::Continue));
        let mut expected = b"HELLO, WORLD 42 \xc3\xa9\r\n".to_vec();
        expected.resize(108, 0);
        assert_eq!(out, expected);
        assert_eq!(echo.requests(), 1);
    }

    #[test]
    fn a_large_read_is_taken_in_pieces() {
        let mut echo = UpperEcho::new(SocketAddr::from(([127, 0, 0, 1], 1)));
        let input = vec![b'a'; OUT_HIGH_WATER + 10];
        let mut out = Vec::new();
        let (used, _) = echo.feed_some(&input, &mut out);
        assert_eq!(used, OUT_HIGH_WATER);
        assert!(out.iter().all(|&b| b == b'A'));
    }
}
