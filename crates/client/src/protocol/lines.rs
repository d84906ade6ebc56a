//! Small byte-level helpers the parsers and encoders share.

#[cfg(target_arch = "x86_64")]
use memchr::arch::x86_64::avx2::memchr::One;
#[cfg(target_arch = "x86_64")]
use std::sync::OnceLock;

/// The AVX2 searcher for LF, built once when the CPU has AVX2:
/// `memchr::memchr` picks its routine and builds its searcher on every
/// call, about 25 of the load generator's instructions per reply (a dipc
/// read reply took 515, now 486). Every protocol's replies are framed with
/// it.
#[cfg(target_arch = "x86_64")]
static AVX2_LF: OnceLock<Option<One>> = OnceLock::new();

/// The position of the first `\n` in `buf`.
#[inline(always)]
pub fn newline(buf: &[u8]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if let Some(searcher) = AVX2_LF.get_or_init(|| One::new(b'\n')) {
        return searcher.find(buf);
    }
    memchr::memchr(b'\n', buf)
}

/// A decimal number made only of digits (no sign, no spaces), or None.
pub fn parse_usize(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0usize, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(usize::from(digit))
    })
}

/// A decimal number with an optional leading '-', or None.
pub fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let n = i64::try_from(parse_usize(digits)?).ok()?;
    Some(if negative { -n } else { n })
}

/// Appends `n` in decimal, without allocating.
pub fn put_int(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::newline;

    /// At every length and LF position the searcher's short, one-vector
    /// and many-vector paths cover, with a second LF after the first and
    /// with none.
    #[test]
    fn newline_finds_the_first_lf() {
        for len in 0..300 {
            let plain = vec![b'x'; len];
            assert_eq!(newline(&plain), None, "no LF in {len} bytes");
            for at in 0..len {
                let mut bytes = plain.clone();
                bytes[at] = b'\n';
                assert_eq!(newline(&bytes), Some(at), "LF at {at} of {len}");
                bytes[len - 1] = b'\n';
                assert_eq!(
                    newline(&bytes),
                    Some(at),
                    "LFs at {at} and the end of {len}"
                );
            }
        }
    }
}
