//! Message sizes as written on the command line: a fixed size (`1KiB`, `20KiB`, `4096`) or `mix`.
//!
//! Binary units, because that is what people mean by "a 1 KiB message": `K`/`KiB` = 1,024 and
//! `M`/`MiB` = 1,048,576; `KB`/`MB` are the decimal 1,000 and 1,000,000. Sizes below
//! [`MIN_FIXED`] are refused: the headers alone (with the tracing token) take about 300 bytes, and
//! a message larger than asked for would make the number a lie.

use std::fmt;
use std::str::FromStr;

use crate::rng::Rng;

/// The smallest fixed size the generator can honour exactly.
pub const MIN_FIXED: usize = 512;
/// The largest fixed size (the ingest accepts 10 MiB by default).
pub const MAX_FIXED: usize = 32 * 1024 * 1024;

/// How big the generated messages are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    /// Every message exactly this many bytes (headers and body, before dot-stuffing), a
    /// single `text/plain` part.
    Fixed(usize),
    /// A realistic mix (see [`SizeSpec::sample`]): `multipart/alternative` text and HTML, sometimes
    /// with a small base64 attachment.
    Mix,
}

/// Buckets of the mix: (share in percent, smallest, largest) in bytes. Mostly a few KiB, a tail
/// up to 100 KiB; the median is about 3.5 KiB and the mean about 12 KiB.
pub const MIX_BUCKETS: [(u64, usize, usize); 4] = [
    (55, 1024, 4 * 1024),
    (25, 4 * 1024, 12 * 1024),
    (12, 12 * 1024, 40 * 1024),
    (8, 40 * 1024, 100 * 1024),
];

impl SizeSpec {
    /// The size of the next message.
    pub fn sample(self, rng: &mut Rng) -> usize {
        match self {
            Self::Fixed(n) => n,
            Self::Mix => {
                let mut roll = rng.below(100);
                for (share, lo, hi) in MIX_BUCKETS {
                    if roll < share {
                        return rng.range(lo as u64, hi as u64) as usize;
                    }
                    roll -= share;
                }
                unreachable!("the mix buckets add up to 100")
            }
        }
    }
}

/// Why a size could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SizeError {
    Malformed(String),
    TooSmall(usize),
    TooLarge(usize),
}

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed(s) => write!(
                f,
                "{s:?} is not a size: write `mix`, or a number with an optional unit (B, K, KiB, KB, M, MiB, MB), e.g. `1KiB`"
            ),
            Self::TooSmall(n) => write!(
                f,
                "{n} bytes is too small: a fixed size must be at least {MIN_FIXED} bytes (the headers take about 300)"
            ),
            Self::TooLarge(n) => write!(f, "{n} bytes is more than the {MAX_FIXED}-byte limit"),
        }
    }
}

impl std::error::Error for SizeError {}

impl FromStr for SizeSpec {
    type Err = SizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("mix") {
            return Ok(Self::Mix);
        }
        let n = parse_bytes(s)?;
        if n < MIN_FIXED {
            return Err(SizeError::TooSmall(n));
        }
        if n > MAX_FIXED {
            return Err(SizeError::TooLarge(n));
        }
        Ok(Self::Fixed(n))
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed(n) => f.write_str(&human_bytes(*n as u64)),
            Self::Mix => f.write_str("mix (1-100 KiB)"),
        }
    }
}

/// `1024`, `1KiB`, `1 k`, `20KiB`, `1.5MiB`, `1KB` → bytes.
pub fn parse_bytes(s: &str) -> Result<usize, SizeError> {
    let malformed = || SizeError::Malformed(s.to_owned());
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let factor: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "kb" => 1000.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "mb" => 1_000_000.0,
        _ => return Err(malformed()),
    };
    let value: f64 = number.parse().map_err(|_| malformed())?;
    let bytes = (value * factor).round();
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 {
        return Err(malformed());
    }
    Ok(bytes as usize)
}

/// Bytes for people: `1 KiB`, `20 KiB`, `1.5 MiB`, `700 B`.
pub fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    let scaled = |unit: u64, name: &str| {
        if n.is_multiple_of(unit) {
            format!("{} {name}", n / unit)
        } else {
            format!("{:.1} {name}", n as f64 / unit as f64)
        }
    };
    if n >= MIB {
        scaled(MIB, "MiB")
    } else if n >= KIB {
        scaled(KIB, "KiB")
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        for (text, bytes) in [
            ("1KiB", 1024),
            ("20KiB", 20 * 1024),
            ("20 kib", 20 * 1024),
            ("4096", 4096),
            ("4096B", 4096),
            ("1k", 1024),
            ("1KB", 1000),
            ("1.5MiB", 1_572_864),
            ("2MB", 2_000_000),
        ] {
            assert_eq!(
                text.parse::<SizeSpec>(),
                Ok(SizeSpec::Fixed(bytes)),
                "{text}"
            );
        }
        assert_eq!("mix".parse::<SizeSpec>(), Ok(SizeSpec::Mix));
        assert_eq!("MIX".parse::<SizeSpec>(), Ok(SizeSpec::Mix));
    }

    #[test]
    fn nonsense_and_extremes_are_refused_with_a_reason() {
        for bad in ["", "KiB", "1 GiB", "1..2K", "-5", "lots", "1KiBx"] {
            assert!(
                matches!(bad.parse::<SizeSpec>(), Err(SizeError::Malformed(_))),
                "{bad}"
            );
        }
        assert_eq!("100".parse::<SizeSpec>(), Err(SizeError::TooSmall(100)));
        assert!(matches!(
            "64MiB".parse::<SizeSpec>(),
            Err(SizeError::TooLarge(_))
        ));
        assert!(SizeError::TooSmall(100).to_string().contains("512"));
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(human_bytes(700), "700 B");
        assert_eq!(human_bytes(1024), "1 KiB");
        assert_eq!(human_bytes(20 * 1024), "20 KiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3 MiB");
        assert_eq!(SizeSpec::Fixed(1024).to_string(), "1 KiB");
    }

    #[test]
    fn the_mix_is_mostly_a_few_kib_with_a_tail_to_100_kib() {
        assert_eq!(MIX_BUCKETS.iter().map(|b| b.0).sum::<u64>(), 100);
        let mut rng = Rng::new(7);
        let mut sizes: Vec<usize> = (0..10_000)
            .map(|_| SizeSpec::Mix.sample(&mut rng))
            .collect();
        sizes.sort_unstable();
        assert!(sizes[0] >= 1024);
        assert!(*sizes.last().unwrap() <= 100 * 1024);
        let median = sizes[sizes.len() / 2];
        assert!((2 * 1024..6 * 1024).contains(&median), "median {median}");
        let over_40k = sizes.iter().filter(|&&s| s >= 40 * 1024).count();
        assert!(
            (500..1100).contains(&over_40k),
            "{over_40k} of 10,000 over 40 KiB"
        );
    }

    #[test]
    fn a_fixed_size_is_always_that_size() {
        let mut rng = Rng::new(1);
        assert!((0..100).all(|_| SizeSpec::Fixed(2048).sample(&mut rng) == 2048));
    }
}
