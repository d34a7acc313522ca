//! `edge-proxy`: the binary. Everything it does is in the library (`edge_proxy::cli`).

use std::process::ExitCode;

/// mimalloc instead of glibc malloc: under load the proxy allocates and frees small buffers per
/// request, and glibc's allocator showed up as a tenth of the profile (`bench/tune.sh` measures
/// the difference with the `system-allocator` feature).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    edge_proxy::cli::main()
}
