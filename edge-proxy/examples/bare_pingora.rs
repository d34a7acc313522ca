//! Benchmark baseline: Pingora with nothing of ours (see `common/bare.rs`), with the same
//! allocator and the same Pingora settings as the edge proxy.
//!
//! ```text
//! cargo run --release -p edge-proxy --example bare_pingora -- 127.0.0.1:18085 127.0.0.1:18081
//! ```
//! `make bench` runs it beside nginx and the edge proxy, so what Pingora itself costs on this
//! machine can be told apart from what the edge proxy's filters add; `bench/tune.sh` changes
//! its settings one at a time.

#[path = "common/bare.rs"]
mod bare;

#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: bare_pingora LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    bare::run(listen, upstream)
}
