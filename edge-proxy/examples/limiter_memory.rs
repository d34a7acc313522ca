//! Benchmark helper: the rate limiter's resident memory after feeding N distinct client keys.
//!
//! ```text
//! cargo run --release -p edge-proxy --example limiter_memory -- 1000 100000 1000000
//! ```
//! Prints one JSON line per count: process RSS before and after, and the limiter's own table
//! size, which is fixed by configuration (1 Mi cells by default) whatever the number of keys.

use std::time::Instant;

use edge_proxy::admission::ratelimit::RateLimiter;
use edge_proxy::config::RatePolicy;

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let counts: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let counts = if counts.is_empty() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        counts
    };
    let limiter = RateLimiter::new(1 << 20);
    let policy = RatePolicy::local("bench", 100.0, 200);
    // Touch every cell once so the table is resident before measuring.
    let now = Instant::now();
    for i in 0..(1u64 << 21) {
        limiter.check(&policy, &format!("warm-{i}"), now);
    }
    let baseline = rss_kb();
    let mut fed = 0u64;
    for count in counts {
        while fed < count {
            limiter.check(&policy, &format!("client-{fed}"), Instant::now());
            fed += 1;
        }
        println!(
            "{{\"keys\":{count},\"rss_kb\":{},\"rss_growth_kb\":{},\"limiter_table_kb\":{}}}",
            rss_kb(),
            rss_kb().saturating_sub(baseline),
            limiter.memory_bytes() / 1024
        );
    }
}
