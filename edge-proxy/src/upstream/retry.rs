//! A retry budget per service, so retries cannot multiply an outage.
//!
//! Every request deposits `ratio` of a token (e.g. 0.2) and every retry withdraws a whole one, so
//! over time retries are at most `ratio` of requests, plus a small reserve (`reserve` tokens,
//! also the cap) that lets a quiet service still retry. Lock-free: one atomic counter in
//! thousandths of a token.

use std::sync::atomic::{AtomicI64, Ordering};

const UNIT: i64 = 1000;

#[derive(Debug)]
pub struct RetryBudget {
    deposit: i64,
    cap: i64,
    balance: AtomicI64,
}

impl RetryBudget {
    /// `ratio` of extra load allowed (0.2 = 20 %), `reserve` retries banked at most.
    pub fn new(ratio: f64, reserve: u32) -> Self {
        let cap = i64::from(reserve) * UNIT;
        RetryBudget {
            deposit: (ratio.clamp(0.0, 1.0) * UNIT as f64) as i64,
            cap,
            balance: AtomicI64::new(cap),
        }
    }

    /// Called once per incoming request.
    pub fn deposit(&self) {
        let _ = self
            .balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                Some((balance + self.deposit).min(self.cap))
            });
    }

    /// Takes one retry from the budget if there is one.
    pub fn try_withdraw(&self) -> bool {
        self.balance
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |balance| {
                (balance >= UNIT).then_some(balance - UNIT)
            })
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_bounded_by_the_ratio() {
        let budget = RetryBudget::new(0.2, 3);
        // The reserve first.
        assert!((0..3).all(|_| budget.try_withdraw()));
        assert!(!budget.try_withdraw());
        // 100 requests buy 20 retries.
        let mut granted = 0;
        for _ in 0..100 {
            budget.deposit();
            if budget.try_withdraw() {
                granted += 1;
            }
        }
        assert_eq!(granted, 20);
    }

    #[test]
    fn the_reserve_is_a_cap() {
        let budget = RetryBudget::new(0.5, 2);
        for _ in 0..1000 {
            budget.deposit();
        }
        assert_eq!((0..10).filter(|_| budget.try_withdraw()).count(), 2);
    }
}
