//! The shared secret of `--auth-file`: a connection presents it with
//! `auth <secret>` before any other request. Compared in constant time, and
//! never printed.

use std::fmt;
use std::sync::Arc;

use subtle::ConstantTimeEq;

#[derive(Clone)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// None for an empty secret, which would let anyone in.
    pub fn new(bytes: &[u8]) -> Option<Secret> {
        (!bytes.is_empty()).then(|| Secret(bytes.into()))
    }

    /// Whether `given` is the secret; the time taken does not depend on
    /// where they differ (only on the lengths).
    pub fn matches(&self, given: &[u8]) -> bool {
        self.0.as_ref().ct_eq(given).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_secret_and_never_shows_it() {
        let s = Secret::new(b"open sesame").expect("not empty");
        assert!(s.matches(b"open sesame"));
        assert!(!s.matches(b"open sesamE"));
        assert!(!s.matches(b"open"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert!(Secret::new(b"").is_none());
    }
}
