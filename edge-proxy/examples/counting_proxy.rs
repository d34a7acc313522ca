//! Benchmark build of the edge proxy that counts heap allocations: the same library as
//! `edge-proxy`, behind `stats_alloc`'s counting allocator (over the system allocator instead
//! of mimalloc: how often the proxy allocates does not depend on which allocator serves it).
//! `make bench` runs it for a short extra run and divides the allocations (and reallocations)
//! made during that run by its requests.
//!
//! ```text
//! ALLOC_COUNT_FILE=/tmp/allocs counting_proxy run --config proxy.toml
//! ALLOC_COUNT_FILE=/tmp/allocs counting_proxy bare LISTEN_ADDR UPSTREAM_ADDR
//! ```
//! The second form counts bare Pingora's (`common/bare.rs`), for comparison.
//! Every 100 ms the file is replaced (written aside, then renamed, so a reader never sees it
//! empty) with one line: `<allocations> <bytes allocated>`, both counted since start.

use std::alloc::System;
use std::process::ExitCode;
use std::time::Duration;

use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[path = "common/bare.rs"]
mod bare;

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() -> ExitCode {
    if let Some(path) = std::env::var_os("ALLOC_COUNT_FILE") {
        let aside = std::path::PathBuf::from(format!("{}.next", path.to_string_lossy()));
        std::thread::spawn(move || loop {
            let stats = ALLOCATOR.stats();
            let line = format!(
                "{} {}\n",
                stats.allocations + stats.reallocations,
                stats.bytes_allocated
            );
            if std::fs::write(&aside, line).is_ok() {
                let _ = std::fs::rename(&aside, &path);
            }
            std::thread::sleep(Duration::from_millis(100));
        });
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [mode, listen, upstream] = args.as_slice() {
        if mode == "bare" {
            bare::run(listen.clone(), upstream.clone());
        }
    }
    edge_proxy::cli::main()
}
