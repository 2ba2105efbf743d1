//! A small seeded random number generator.
//!
//! The core never seeds itself (PROTOCOL.md section 5): every component that needs
//! randomness owns one of these, built from a seed the caller passes, so the same inputs give
//! the same outputs. The algorithm is SplitMix64: one `u64` of state, fast, and good enough
//! for picking servers and breaking ties. It is not for cryptography.

/// A deterministic pseudo-random generator (SplitMix64).
///
/// ```
/// use callosum_proto::Rng;
///
/// let mut a = Rng::new(42);
/// let mut b = Rng::new(42);
/// assert_eq!(a.next_u64(), b.next_u64());
/// assert!(a.below(10) < 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

impl Rng {
    /// A generator whose whole output is fixed by `seed`.
    pub const fn new(seed: u64) -> Rng {
        Rng { state: seed }
    }

    /// The next 64 random bits.
    ///
    /// ```
    /// # use callosum_proto::Rng;
    /// let mut rng = Rng::new(1);
    /// assert_ne!(rng.next_u64(), rng.next_u64());
    /// ```
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniformly distributed number in `0..bound`; `0` when `bound` is `0`.
    ///
    /// Uses Lemire's multiply-and-reject method, so there is no modulo bias.
    ///
    /// ```
    /// # use callosum_proto::Rng;
    /// let mut rng = Rng::new(3);
    /// for _ in 0..100 {
    ///     assert!(rng.below(4) < 4);
    /// }
    /// assert_eq!(rng.below(0), 0);
    /// ```
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = u128::from(self.next_u64()) * u128::from(bound);
            // The low half decides whether this draw is in the biased tail.
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_covers_the_whole_range_and_nothing_else() {
        let mut rng = Rng::new(99);
        let mut seen = [0u32; 5];
        for _ in 0..5_000 {
            seen[rng.below(5) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
