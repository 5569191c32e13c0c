//! Refusals that take as long whatever the reason: an unknown static token
//! id costs no argon2 (a project rule), so its refusal is held back, on a
//! timer and without CPU, for about as long as recent argon2 verifications
//! took. Unknown id, wrong secret and revoked token then answer alike in
//! body and in time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The estimate before any hash was measured: argon2id with OWASP's
/// parameters on one current core (`docs/PERFORMANCE.md` measures 27 ms).
const INITIAL: Duration = Duration::from_millis(25);
/// No estimate is longer: a stalled hash must not hold refusals for long.
const CEILING: Duration = Duration::from_secs(1);
/// Each new measurement weighs 1/8 in the moving average.
const WEIGHT_SHIFT: u32 = 3;

/// An exponential moving average of argon2 verification times.
#[derive(Debug)]
pub struct HashTimer {
    average_nanos: AtomicU64,
}

impl Default for HashTimer {
    fn default() -> Self {
        Self {
            average_nanos: AtomicU64::new(nanos(INITIAL)),
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.min(CEILING).as_nanos()).unwrap_or(u64::MAX)
}

impl HashTimer {
    /// Takes one measured verification into the average.
    pub fn record(&self, took: Duration) {
        let sample = nanos(took);
        // Races lose a sample at worst.
        let _ = self
            .average_nanos
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| {
                Some(old - (old >> WEIGHT_SHIFT) + (sample >> WEIGHT_SHIFT))
            });
    }

    /// How long a verification takes lately.
    pub fn estimate(&self) -> Duration {
        Duration::from_nanos(self.average_nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_measurements_and_is_capped() {
        let timer = HashTimer::default();
        assert_eq!(timer.estimate(), INITIAL);
        for _ in 0..100 {
            timer.record(Duration::from_millis(60));
        }
        let estimate = timer.estimate();
        assert!(
            estimate > Duration::from_millis(55) && estimate <= Duration::from_millis(60),
            "{estimate:?}"
        );
        for _ in 0..100 {
            timer.record(Duration::from_secs(30));
        }
        assert!(timer.estimate() <= CEILING);
    }
}
