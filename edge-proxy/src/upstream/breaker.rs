//! A passive circuit breaker per upstream instance.
//!
//! Closed → Open after `consecutive_failures` failures in a row, **or** when the failure rate
//! over the last `window` calls exceeds `failure_rate` once at least `minimum_calls` are in the
//! window. Open lasts `open_for`, doubled each time it re-opens without having closed (capped at
//! `max_open_for`). After that the next caller moves it to Half-open, which admits at most
//! `half_open_probes` requests at a time: a success closes it, a failure re-opens it.
//!
//! Every method takes `now` so the state machine is tested with controlled time. The lock is per
//! instance (never global) and held only for a few arithmetic steps.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

/// What the breaker is doing, as reported in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The `state` label of `edge_circuit_breaker_state`.
    pub fn label(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed,
    Open { until: Instant },
    HalfOpen { probes_in_flight: u32 },
}

#[derive(Debug)]
struct Inner {
    state: State,
    consecutive_failures: u32,
    /// Outcomes of the last `window` calls while closed (true = failure).
    window: VecDeque<bool>,
    window_failures: usize,
    /// Times opened since the breaker last closed: drives the backoff.
    trips: u32,
}

/// Whether a call may go ahead, and if so whether it is a half-open probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allowed,
    Probe,
    /// Refused: open until this instant.
    Refused(Instant),
}

#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            inner: Mutex::new(Inner {
                state: State::Closed,
                consecutive_failures: 0,
                window: VecDeque::with_capacity(config.window),
                window_failures: 0,
                trips: 0,
            }),
            config,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state at `now`, without changing it (an open breaker whose time is up reads as
    /// half-open: the next call would be a probe).
    pub fn state(&self, now: Instant) -> BreakerState {
        match self.lock().state {
            State::Closed => BreakerState::Closed,
            State::Open { until } if now >= until => BreakerState::HalfOpen,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// When an open breaker will admit a probe; `None` unless open.
    pub fn open_until(&self) -> Option<Instant> {
        match self.lock().state {
            State::Open { until } => Some(until),
            _ => None,
        }
    }

    /// True when a call at `now` would be admitted (used to pick candidates without
    /// reserving a probe slot).
    pub fn would_admit(&self, now: Instant) -> bool {
        match self.lock().state {
            State::Closed => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probes_in_flight } => probes_in_flight < self.config.half_open_probes,
        }
    }

    /// Admits a call or refuses it; a probe must later be settled with `on_success`,
    /// `on_failure` or `on_abandoned`.
    pub fn admit(&self, now: Instant) -> Admission {
        let mut inner = self.lock();
        match inner.state {
            State::Closed => Admission::Allowed,
            State::Open { until } if now < until => Admission::Refused(until),
            State::Open { .. } => {
                inner.state = State::HalfOpen {
                    probes_in_flight: 1,
                };
                Admission::Probe
            }
            State::HalfOpen { probes_in_flight }
                if probes_in_flight < self.config.half_open_probes =>
            {
                inner.state = State::HalfOpen {
                    probes_in_flight: probes_in_flight + 1,
                };
                Admission::Probe
            }
            // All probe slots taken: refuse briefly.
            State::HalfOpen { .. } => Admission::Refused(now + Duration::from_secs(1)),
        }
    }

    pub fn on_success(&self, _now: Instant) {
        let mut inner = self.lock();
        match inner.state {
            State::HalfOpen { .. } => {
                inner.state = State::Closed;
                inner.trips = 0;
                inner.consecutive_failures = 0;
                inner.window.clear();
                inner.window_failures = 0;
            }
            State::Closed => {
                inner.consecutive_failures = 0;
                self.record(&mut inner, false);
            }
            // A call admitted before the breaker opened finished well: no effect on the state.
            State::Open { .. } => {}
        }
    }

    pub fn on_failure(&self, now: Instant) {
        let mut inner = self.lock();
        match inner.state {
            State::HalfOpen { .. } => self.trip(&mut inner, now),
            State::Closed => {
                inner.consecutive_failures += 1;
                self.record(&mut inner, true);
                let total = inner.window.len();
                let rate_exceeded = total >= self.config.minimum_calls
                    && (inner.window_failures as f64) / (total as f64) > self.config.failure_rate;
                if inner.consecutive_failures >= self.config.consecutive_failures || rate_exceeded {
                    self.trip(&mut inner, now);
                }
            }
            State::Open { .. } => {}
        }
    }

    /// A probe that ended without an outcome (client went away): frees its slot.
    pub fn on_abandoned(&self) {
        let mut inner = self.lock();
        if let State::HalfOpen { probes_in_flight } = inner.state {
            inner.state = State::HalfOpen {
                probes_in_flight: probes_in_flight.saturating_sub(1),
            };
        }
    }

    fn record(&self, inner: &mut Inner, failure: bool) {
        if self.config.window == 0 {
            return;
        }
        if inner.window.len() == self.config.window && inner.window.pop_front() == Some(true) {
            inner.window_failures -= 1;
        }
        inner.window.push_back(failure);
        if failure {
            inner.window_failures += 1;
        }
    }

    fn trip(&self, inner: &mut Inner, now: Instant) {
        inner.trips = inner.trips.saturating_add(1);
        let factor = 1u32 << (inner.trips - 1).min(16);
        let open_for = self
            .config
            .open_for
            .saturating_mul(factor)
            .min(self.config.max_open_for);
        inner.state = State::Open {
            until: now + open_for,
        };
        inner.consecutive_failures = 0;
        inner.window.clear();
        inner.window_failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_rate: 0.5,
            window: 10,
            minimum_calls: 6,
            open_for: Duration::from_secs(2),
            max_open_for: Duration::from_secs(5),
            half_open_probes: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures() {
        let breaker = CircuitBreaker::new(config());
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(breaker.admit(t0), Admission::Allowed);
            breaker.on_failure(t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        breaker.on_failure(t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
        assert_eq!(
            breaker.admit(t0 + Duration::from_secs(1)),
            Admission::Refused(t0 + Duration::from_secs(2))
        );
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            minimum_calls: 100,
            ..config()
        });
        let t0 = Instant::now();
        for _ in 0..10 {
            breaker.on_failure(t0);
            breaker.on_failure(t0);
            breaker.on_success(t0);
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
    }

    #[test]
    fn opens_on_failure_rate_once_enough_calls() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 100,
            ..config()
        });
        let t0 = Instant::now();
        // F S F S F: 60 % failures but only 5 calls: below the minimum.
        for i in 0..5 {
            if i % 2 == 0 {
                breaker.on_failure(t0)
            } else {
                breaker.on_success(t0)
            }
        }
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        // 6th call, a failure: 4/6 > 50 %.
        breaker.on_failure(t0);
        assert_eq!(breaker.state(t0), BreakerState::Open);
    }

    #[test]
    fn old_outcomes_slide_out_of_the_window() {
        let breaker = CircuitBreaker::new(BreakerConfig {
            consecutive_failures: 100,
            ..config()
        });
        let t0 = Instant::now();
        for _ in 0..4 {
            breaker.on_success(t0);
            breaker.on_failure(t0);
        }
        // 4 failures in 8: exactly 50 %, not over.
        assert_eq!(breaker.state(t0), BreakerState::Closed);
        for _ in 0..10 {
            breaker.on_success(t0);
        }
        // The failures have slid out; two more do not trip it.
        breaker.on_failure(t0);
        breaker.on_failure(t0);
        assert_eq!(breaker.state(t0), BreakerState::Closed);
    }

    #[test]
    fn half_open_admits_limited_probes_and_success_closes() {
        let breaker = CircuitBreaker::new(config());
        let t0 = Instant::now();
        for _ in 0..3 {
            breaker.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(2);
        assert_eq!(breaker.state(later), BreakerState::HalfOpen);
        assert!(breaker.would_admit(later));
        assert_eq!(breaker.admit(later), Admission::Probe);
        assert!(!breaker.would_admit(later));
        assert!(matches!(breaker.admit(later), Admission::Refused(_)));
        breaker.on_success(later);
        assert_eq!(breaker.state(later), BreakerState::Closed);
        assert_eq!(breaker.admit(later), Admission::Allowed);
    }

    #[test]
    fn failing_probes_reopen_with_backoff() {
        let breaker = CircuitBreaker::new(config());
        let mut now = Instant::now();
        for _ in 0..3 {
            breaker.on_failure(now);
        }
        // Open 2 s, then 4 s, then capped at 5 s.
        for expected in [2, 4, 5, 5] {
            assert_eq!(
                breaker.admit(now),
                Admission::Refused(now + Duration::from_secs(expected))
            );
            now += Duration::from_secs(expected);
            assert_eq!(breaker.admit(now), Admission::Probe);
            breaker.on_failure(now);
        }
    }

    #[test]
    fn abandoned_probe_frees_its_slot() {
        let breaker = CircuitBreaker::new(config());
        let t0 = Instant::now();
        for _ in 0..3 {
            breaker.on_failure(t0);
        }
        let later = t0 + Duration::from_secs(3);
        assert_eq!(breaker.admit(later), Admission::Probe);
        breaker.on_abandoned();
        assert_eq!(breaker.admit(later), Admission::Probe);
    }
}
