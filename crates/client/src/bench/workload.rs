//! Where each request comes from: the prefill's fixed sequence (every
//! mailbox or key written once), or the mix's random choice.

use super::mix::Mix;
use super::rng::Rng;
use crate::protocol::{Op, Protocol};

#[derive(Debug, Clone)]
pub enum Source {
    /// Each op of `ops` on every index of `0..spread`, in order.
    Sequence {
        ops: Vec<Op>,
        spread: u64,
        next: u64,
    },
    /// An op picked from the mix, on an index picked from `0..spread`.
    Random { mix: Mix, spread: u64 },
}

impl Source {
    /// The prefill: one write of every mailbox the mix reads or writes, and
    /// one put of every key it gets, puts or deletes. Redis and memcached
    /// have one key space, so one write per key.
    pub fn prefill(mix: &Mix, protocol: Protocol, spread: u64) -> Self {
        let mut ops = Vec::new();
        let separate_key_space = matches!(protocol, Protocol::Dipc | Protocol::Fixed);
        let shared = mix.ops().any(|op| op.on_mailbox() || op.on_shared_key());
        if !separate_key_space && shared || mix.ops().any(Op::on_mailbox) {
            ops.push(Op::Write);
        }
        if separate_key_space && mix.ops().any(Op::on_shared_key) {
            ops.push(Op::Put);
        }
        Source::Sequence {
            ops,
            spread,
            next: 0,
        }
    }

    /// How many mailboxes or keys requests spread over.
    pub fn spread(&self) -> u64 {
        match self {
            Source::Sequence { spread, .. } | Source::Random { spread, .. } => *spread,
        }
    }

    pub fn random(mix: Mix, spread: u64) -> Self {
        Source::Random { mix, spread }
    }

    /// How many requests the source has left (a random one never ends).
    pub fn remaining(&self) -> u64 {
        match self {
            Source::Sequence { ops, spread, next } => (ops.len() as u64 * spread) - next,
            Source::Random { .. } => u64::MAX,
        }
    }

    /// The next request's operation and index; only called while
    /// `remaining() > 0`.
    pub fn next(&mut self, rng: &mut Rng) -> (Op, u64) {
        match self {
            Source::Sequence { ops, spread, next } => {
                let op = ops[(*next / *spread) as usize];
                let index = *next % *spread;
                *next += 1;
                (op, index)
            }
            Source::Random { mix, spread } => {
                let op = mix.pick(rng);
                (op, rng.below(*spread))
            }
        }
    }
}
