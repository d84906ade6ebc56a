//! Small byte-level helpers the parsers and encoders share.

/// The position of the first `\n` in `buf`.
pub fn newline(buf: &[u8]) -> Option<usize> {
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
