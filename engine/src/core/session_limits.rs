//! Per-session limits that protect the server from a misbehaving or vanished peer: liveness
//! (idle timeout and ICE consent expiry) and a gate on data-channel events (size and rate).

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionLimits {
    /// No datagram at all for this long (including before the first one): the session is closed.
    pub idle_timeout: Duration,
    /// No STUN consent check for this long: consent expired (RFC 7675), the session is closed.
    pub consent_timeout: Duration,
    /// Largest data-channel event accepted, bytes.
    pub max_event_bytes: usize,
    /// Sustained data-channel events per second (bursts of twice this are allowed).
    pub events_per_sec: u32,
    /// A call not connected (ICE and DTLS done) this long after its offer has failed to set up,
    /// even while ICE checks keep it alive (a DTLS handshake that never completes).
    pub setup_timeout: Duration,
    /// Longest call (`--max-session-s`); `None`: no limit. The client gets an `error` event
    /// (`session_expired`, as OpenAI's hosted sessions send) before the call ends.
    pub max_duration: Option<Duration>,
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle_timeout: Duration::from_secs(30),
            consent_timeout: Duration::from_secs(30),
            max_event_bytes: 16 * 1024,
            events_per_sec: 50,
            setup_timeout: Duration::from_secs(20),
            max_duration: None,
        }
    }
}

/// Why a session ended, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Hangup,
    Idle,
    ConsentExpired,
    PeerGone,
    /// No authenticated ICE check ever arrived (wrong address, blocked UDP, a client that dropped
    /// our replies).
    IceFailed,
    /// ICE worked but DTLS never completed (certificate or cipher mismatch, lost handshake).
    DtlsFailed,
    /// The peer's ICE connection dropped after the call was up.
    IceDisconnected,
    /// The call reached `--max-session-s`.
    MaxDuration,
    /// Its datagrams moved to a shard that had no room to adopt it.
    HandoffFailed,
}

impl EndReason {
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Idle => "idle",
            EndReason::ConsentExpired => "consent_expired",
            EndReason::PeerGone => "peer_gone",
            EndReason::IceFailed => "ice_failed",
            EndReason::DtlsFailed => "dtls_failed",
            EndReason::IceDisconnected => "ice_disconnected",
            EndReason::MaxDuration => "max_duration",
            EndReason::HandoffFailed => "handoff_failed",
        }
    }

    /// Whether this end is a failure to connect that an operator should see (logged at warn).
    pub fn is_setup_failure(self) -> bool {
        matches!(self, EndReason::IceFailed | EndReason::DtlsFailed)
    }

    /// The reason a session that was never connected ended with, by how far its setup got.
    pub fn setup_failure(ice_checked: bool) -> Self {
        if ice_checked {
            EndReason::DtlsFailed
        } else {
            EndReason::IceFailed
        }
    }
}

/// Tracks when the peer was last heard from.
#[derive(Debug, Clone)]
pub struct Liveness {
    last_datagram: Instant,
    last_consent: Instant,
}

impl Liveness {
    pub fn new(now: Instant) -> Self {
        Liveness {
            last_datagram: now,
            last_consent: now,
        }
    }

    pub fn on_datagram(&mut self, now: Instant) {
        self.last_datagram = now;
    }

    /// An authenticated consent check arrived.
    pub fn on_consent(&mut self, now: Instant) {
        self.last_datagram = now;
        self.last_consent = now;
    }

    /// Whether the session must end at `now`, and why.
    pub fn expired(&self, now: Instant, limits: &SessionLimits) -> Option<EndReason> {
        if now.saturating_duration_since(self.last_datagram) >= limits.idle_timeout {
            Some(EndReason::Idle)
        } else if now.saturating_duration_since(self.last_consent) >= limits.consent_timeout {
            Some(EndReason::ConsentExpired)
        } else {
            None
        }
    }

    /// When `expired` could next become true.
    pub fn deadline(&self, limits: &SessionLimits) -> Instant {
        (self.last_datagram + limits.idle_timeout).min(self.last_consent + limits.consent_timeout)
    }
}

/// Why a client event was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventRejected {
    TooLarge,
    RateLimited,
}

impl EventRejected {
    pub fn label(self) -> &'static str {
        match self {
            EventRejected::TooLarge => "too_large",
            EventRejected::RateLimited => "rate_limited",
        }
    }
}

/// A token bucket for data-channel events.
#[derive(Debug, Clone)]
pub struct EventGate {
    tokens: f64,
    last: Instant,
}

impl EventGate {
    pub fn new(now: Instant, limits: &SessionLimits) -> Self {
        EventGate {
            tokens: f64::from(limits.events_per_sec) * 2.0,
            last: now,
        }
    }

    pub fn admit(
        &mut self,
        now: Instant,
        len: usize,
        limits: &SessionLimits,
    ) -> Result<(), EventRejected> {
        if len > limits.max_event_bytes {
            return Err(EventRejected::TooLarge);
        }
        let rate = f64::from(limits.events_per_sec);
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * rate).min(rate * 2.0);
        if self.tokens < 1.0 {
            return Err(EventRejected::RateLimited);
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_and_consent() {
        let l = SessionLimits {
            idle_timeout: Duration::from_secs(10),
            consent_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut live = Liveness::new(t0);
        let s = Duration::from_secs;
        assert_eq!(live.expired(t0 + s(4), &l), None);
        // Media keeps flowing but no consent check: consent expires.
        live.on_datagram(t0 + s(4));
        assert_eq!(live.expired(t0 + s(5), &l), Some(EndReason::ConsentExpired));
        live.on_consent(t0 + s(5));
        assert_eq!(live.deadline(&l), t0 + s(10));
        // Nothing at all: idle wins.
        assert_eq!(live.expired(t0 + s(15), &l), Some(EndReason::Idle));
    }

    #[test]
    fn event_gate_size_and_rate() {
        let l = SessionLimits {
            events_per_sec: 10,
            max_event_bytes: 100,
            ..Default::default()
        };
        let t0 = Instant::now();
        let mut g = EventGate::new(t0, &l);
        assert_eq!(g.admit(t0, 101, &l), Err(EventRejected::TooLarge));
        // A burst of 20 passes, the 21st is limited; a second later 10 more pass.
        for _ in 0..20 {
            assert_eq!(g.admit(t0, 10, &l), Ok(()));
        }
        assert_eq!(g.admit(t0, 10, &l), Err(EventRejected::RateLimited));
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert_eq!(g.admit(t1, 10, &l), Ok(()));
        }
        assert_eq!(g.admit(t1, 10, &l), Err(EventRejected::RateLimited));
    }
}
