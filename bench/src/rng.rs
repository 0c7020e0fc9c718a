//! A small deterministic random number generator (SplitMix64).
//!
//! The load generator needs varied sizes and contents, not cryptographic quality; a seeded
//! generator makes a run's size sequence reproducible (`--seed`) and keeps the crate free of
//! another dependency.

/// SplitMix64 (Steele, Lea and Flood, 2014): one 64-bit state, good enough statistics for
/// picking sizes and filler words.
#[derive(Debug, Clone)]
pub struct Rng {
    state: u64,
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`). The modulo bias is below 2^-40 for the small `n` used here.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "below(0)");
        self.next_u64() % n
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        assert!(lo <= hi, "range({lo}, {hi})");
        lo + self.below(hi - lo + 1)
    }

    /// True `percent` times out of a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_sequence() {
        let a: Vec<u64> = {
            let mut r = Rng::new(42);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let mut r = Rng::new(42);
        assert!(a.iter().all(|&x| x == r.next_u64()));
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }

    #[test]
    fn ranges_are_inclusive_and_stay_inside() {
        let mut r = Rng::new(3);
        let mut seen = [false; 3];
        for _ in 0..1000 {
            let x = r.range(10, 12);
            assert!((10..=12).contains(&x));
            seen[(x - 10) as usize] = true;
        }
        assert_eq!(seen, [true; 3]);
        assert_eq!(r.range(5, 5), 5);
    }

    #[test]
    fn chance_is_roughly_its_percentage() {
        let mut r = Rng::new(9);
        let hits = (0..10_000).filter(|_| r.chance(20)).count();
        assert!((1800..2200).contains(&hits), "{hits}");
        assert!(!(0..100).any(|_| r.chance(0)));
    }

    #[test]
    fn fill_covers_odd_lengths() {
        let mut buf = [0u8; 13];
        Rng::new(5).fill(&mut buf);
        assert!(buf[8..].iter().any(|&b| b != 0));
    }
}
