//! A tiny deterministic pseudo-random generator (xorshift64*), so that a
//! run's choice of operations and keys is reproducible and costs a few
//! nanoseconds per request, with no crate.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for stream number `seed` (e.g. a connection's index).
    /// The seed goes through splitmix64 first, so that neighbouring seeds
    /// give unrelated streams and the state is never 0 (xorshift's fixed
    /// point).
    pub fn new(seed: u64) -> Self {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        Rng(z.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0) by multiply-shift rather than `%`: no
    /// division, and a bias far below anything a benchmark could see.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}
