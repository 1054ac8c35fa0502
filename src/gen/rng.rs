//! A small deterministic pseudo-random generator (SplitMix64). The generator needs reproducibility
//! across platforms and versions, not cryptographic quality, and a dozen lines here keep it free of
//! a dependency whose output could change with an upgrade.

use chrono::NaiveDate;

/// SplitMix64: passes BigCrush, one `u64` of state, trivially seekable by deriving children.
#[derive(Debug, Clone)]
pub(super) struct Rng {
    state: u64,
}

/// The SplitMix64 output function; also a good 64-bit hash for deriving seeds.
pub(super) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator for one purpose: the seed and a path of tags. Separate streams per purpose (and
    /// per institution) keep one part of the data stable when another part changes.
    pub(super) fn derive(seed: u64, path: &[u64]) -> Rng {
        let mut state = mix(seed ^ 0x5155_4F54_4148_5542);
        for &tag in path {
            state = mix(state ^ mix(tag.wrapping_add(0x9E37_79B9_7F4A_7C15)));
        }
        Rng { state }
    }

    /// The next 64 random bits.
    pub(super) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// A uniform index below `n` (which must be positive).
    pub(super) fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "cannot pick below zero");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A uniform integer in `lo..=hi`; `lo` when the range is empty.
    pub(super) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (hi - lo) as u64 + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as i64
    }

    /// A uniform float in `[0, 1)`.
    pub(super) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A uniform float in `[lo, hi)`.
    pub(super) fn float(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// True with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub(super) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A uniform date in `from..=to`; `from` when the range is empty.
    pub(super) fn date(&mut self, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        if to <= from {
            return from;
        }
        let days = (to - from).num_days();
        from + chrono::Days::new(self.between(0, days) as u64)
    }

    /// Fisher–Yates shuffle.
    pub(super) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let a: Vec<u64> = {
            let mut r = Rng::derive(7, &[1, 2]);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let b: Vec<u64> = {
            let mut r = Rng::derive(7, &[1, 2]);
            (0..5).map(|_| r.next_u64()).collect()
        };
        let c: Vec<u64> = {
            let mut r = Rng::derive(7, &[1, 3]);
            (0..5).map(|_| r.next_u64()).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::derive(1, &[]);
        for _ in 0..1000 {
            assert!(r.below(3) < 3);
            let x = r.between(-2, 2);
            assert!((-2..=2).contains(&x));
        }
    }
}
