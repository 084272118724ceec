//! Seeds as people type them, and random ones.

use crate::{Result, RuntimeError};

/// A random seed in the range every other tool accepts (32 bits).
pub fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish() & 0xFFFF_FFFF
}

/// A typed seed: empty or `-1` asks for a random one (`None`); otherwise a whole number from 0
/// to 2^64 - 1.
pub fn parse_seed(text: &str) -> Result<Option<u64>> {
    match text.trim() {
        "" | "-1" => Ok(None),
        t => t.parse::<u64>().map(Some).map_err(|_| {
            let what = if t.chars().all(|c| c.is_ascii_digit()) {
                "is too large"
            } else {
                "is not a whole number"
            };
            RuntimeError::Invalid(format!(
                "seed {t:?} {what}: use a whole number from 0 to {} (or -1 for a random one)",
                u64::MAX
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_parse_and_say_what_is_wrong() {
        assert_eq!(parse_seed(" 42 ").unwrap(), Some(42));
        assert_eq!(parse_seed("-1").unwrap(), None);
        assert_eq!(parse_seed("").unwrap(), None);
        assert_eq!(parse_seed("18446744073709551615").unwrap(), Some(u64::MAX));
        let e = parse_seed("abc").unwrap_err().to_string();
        assert!(e.contains("not a whole number"), "{e}");
        let e = parse_seed("18446744073709551616").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        assert!(random_seed() <= 0xFFFF_FFFF);
    }
}
