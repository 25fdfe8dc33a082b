//! Per-IP token buckets for signaling (offers, token minting). Bounded: when the table is full,
//! idle entries are pruned, and if it is still full the oldest half goes (an attacker spraying
//! addresses only resets their own buckets, never blocks others').

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

#[derive(Debug)]
pub struct IpRateLimiter {
    per_sec: f64,
    burst: f64,
    max_entries: usize,
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl IpRateLimiter {
    /// `per_sec` requests per second sustained per address, bursts of `burst`.
    pub fn new(per_sec: u32, burst: u32, max_entries: usize) -> Self {
        IpRateLimiter {
            per_sec: f64::from(per_sec),
            burst: f64::from(burst.max(1)),
            max_entries: max_entries.max(16),
            buckets: HashMap::new(),
        }
    }

    /// Takes one token for `ip`; false when it has none left.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> bool {
        if self.per_sec <= 0.0 {
            return true; // limiting off
        }
        if !self.buckets.contains_key(&ip) && self.buckets.len() >= self.max_entries {
            self.prune(now);
        }
        let (per_sec, burst) = (self.per_sec, self.burst);
        let (tokens, last) = self.buckets.entry(ip).or_insert((burst, now));
        let dt = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + dt * per_sec).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }

    fn prune(&mut self, now: Instant) {
        let full_after = self.burst / self.per_sec;
        self.buckets
            .retain(|_, (_, last)| now.saturating_duration_since(*last).as_secs_f64() < full_after);
        if self.buckets.len() >= self.max_entries {
            let mut ages: Vec<Instant> = self.buckets.values().map(|(_, t)| *t).collect();
            ages.sort();
            let cut = ages[ages.len() / 2];
            self.buckets.retain(|_, (_, last)| *last > cut);
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate_per_address() {
        let mut l = IpRateLimiter::new(2, 4, 1000);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t0 = Instant::now();
        assert!((0..4).all(|_| l.check(a, t0)));
        assert!(!l.check(a, t0));
        assert!(l.check(b, t0), "other addresses are not affected");
        assert!(l.check(a, t0 + Duration::from_millis(500)));
        assert!(!l.check(a, t0 + Duration::from_millis(500)));
    }

    #[test]
    fn table_stays_bounded() {
        let mut l = IpRateLimiter::new(1, 1, 100);
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            l.check(ip, t0 + Duration::from_micros(u64::from(i)));
        }
        assert!(l.len() <= 100);
    }
}
