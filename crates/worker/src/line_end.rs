//! Where a request line ends: at its LF, or at a NUL, which ends the
//! strings C clients send (docs/prog3.md, "Protocol").
//!
//! Every request's end is looked for here. `memchr::memchr2` picks the
//! CPU's best routine and builds its searcher for the two bytes on every
//! call; on x86_64 the AVX2 searcher is built once instead, which took
//! about a quarter off the instructions a pipelined 100-byte write spends
//! finding its end, 95 to 70 (bench/changes.md).

#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::avx2::memchr::Two;
#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

/// The AVX2 searcher for LF and NUL, when the CPU has AVX2. A `OnceLock`,
/// whose look at an initialised value is inline, where `LazyLock`'s is a
/// call.
#[cfg(target_arch = "x86_64")]
static AVX2: OnceLock<Option<Two>> = OnceLock::new();

/// The position of the first LF or NUL in `bytes`.
#[inline(always)]
pub fn find(bytes: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = AVX2.get_or_init(|| Two::new(b'\n', 0)) {
        return searcher.find(bytes);
    }
    memchr::memchr2(b'\n', 0, bytes)
}

#[cfg(test)]
mod tests {
    use super::find;
    use proptest::prelude::*;

    proptest! {
        /// Against the plainest search there is, at every length and
        /// position that the searcher's short, one-vector and many-vector
        /// paths cover, with no end, one, or two.
        #[test]
        fn finds_the_first_lf_or_nul(
            mut bytes in prop::collection::vec(1u8..=255, 0..300),
            ends in prop::collection::vec((any::<prop::sample::Index>(), prop_oneof![Just(b'\n'), Just(0u8)]), 0..3),
        ) {
            // Only the ends placed here: no LF from the generator.
            bytes.iter_mut().filter(|b| **b == b'\n').for_each(|b| *b = b'x');
            let len = bytes.len();
            if len > 0 {
                for (at, end) in ends {
                    bytes[at.index(len)] = end;
                }
            }
            let expected = bytes.iter().position(|&b| b == b'\n' || b == 0);
            prop_assert_eq!(find(&bytes), expected);
        }
    }
}
