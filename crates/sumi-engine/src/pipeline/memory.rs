//! Whether a request fits in memory, checked before it runs, so that a size the device cannot
//! hold is refused with a message instead of exhausting the machine. The network estimates its
//! own activations (`DenoisingNetwork::activation_bytes`); the VAE decode tiles itself when its
//! whole-image decode would not fit, so it never refuses.

use crate::{Error, Result};

/// Refuses `need` bytes when `free` (what the device can still give, when known) cannot hold
/// them, saying how much is needed and what is free.
pub fn check_fits(need: u64, free: Option<u64>, what: &str) -> Result<()> {
    const GIB: f64 = (1u64 << 30) as f64;
    match free {
        // Leave a tenth for everything the estimate does not count.
        Some(free) if need > free / 10 * 9 => Err(Error::InvalidRequest(format!(
            "{what} needs about {:.1} GiB of memory but only {:.1} GiB are free: choose a \
             smaller size, or close other programs",
            need as f64 / GIB,
            free as f64 / GIB
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_does_not_fit_and_says_how_much() {
        assert!(check_fits(1 << 30, Some(8 << 30), "x").is_ok());
        assert!(check_fits(100 << 30, None, "x").is_ok());
        let e = check_fits(100 << 30, Some(8 << 30), "a 16384x16384 image").unwrap_err();
        assert!(
            e.to_string()
                .contains("needs about 100.0 GiB of memory but only 8.0 GiB are free"),
            "{e}"
        );
    }
}
