//! A byte-rate cap shared by parallel workers: each one reserves its bytes'
//! share of time on one clock, so the cap holds across all of them.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pacer {
    /// Bytes per second.
    rate: u64,
    /// When the cap next lets a byte through.
    clock: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(bytes_per_second: u64) -> Pacer {
        Pacer {
            rate: bytes_per_second.max(1),
            clock: Mutex::new(None),
        }
    }

    /// Reserves `bytes`; returns the instant they may go. Time the cap was
    /// not used is not saved up: after a pause the clock restarts at now.
    pub fn reserve(&self, bytes: u64, now: Instant) -> Instant {
        let mut clock = self.clock.lock().expect("not poisoned");
        let start = clock.map_or(now, |c| c.max(now));
        *clock = Some(start + Duration::from_secs_f64(bytes as f64 / self.rate as f64));
        start
    }

    /// Sleeps the calling thread until `bytes` may go.
    pub fn wait_blocking(&self, bytes: u64) {
        let now = Instant::now();
        let at = self.reserve(bytes, now);
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_queue_at_the_rate() {
        let p = Pacer::new(1 << 20);
        let t0 = Instant::now();
        assert_eq!(p.reserve(1 << 20, t0), t0);
        assert_eq!(p.reserve(512 << 10, t0), t0 + Duration::from_secs(1));
        assert_eq!(
            p.reserve(1, t0),
            t0 + Duration::from_millis(1500),
            "two workers' bytes add up"
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.reserve(1, later), later, "an idle cap saves nothing up");
    }
}
