#!/usr/bin/env python3
"""Reduces bench/profile.sh's `perf report` outputs to bench/results/profile.md: per proxy,
the kernel/user split, the share of each area of code, and the top functions.
`profile_report.py WORKDIR OUT.md CPU TARGET...`"""

import json
import re
import sys

LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+\[([k.])\]\s+(.*)$")

# Areas of user-space code, first match wins (symbols are demangled Rust or C names).
AREAS = [
    ("edge proxy (ours)", r"edge_proxy::|edge_proxy\b"),
    ("Pingora HTTP/1 and proxy", r"pingora_core::protocols::http|pingora_proxy::|pingora_http::|httparse::"),
    ("Pingora other (connectors, pools, timeouts, server)", r"pingora_"),
    ("tokio runtime and I/O", r"tokio::|mio::"),
    ("allocator", r"\bmi_|mimalloc|_mi_|\bmalloc\b|\bfree\b|cfree|__libc_malloc|_int_malloc|_int_free"),
    ("metrics (prometheus)", r"prometheus::"),
    ("logging (tracing, JSON)", r"tracing|serde_json|serde::"),
    ("HTTP types (http, bytes)", r"\bhttp::|bytes::"),
    ("memcpy, string formatting, hashing", r"memcpy|memmove|memset|memcmp|core::fmt|alloc::fmt|hash|Hash|sip"),
    ("other Rust std/core", r"core::|alloc::|std::"),
]


# The rows' names, by target.
NAMES = {
    "nginx": "nginx (proxy_pass, keep-alive upstream)",
    "bare": "Pingora, bare (no filters)",
    "headers": "Pingora + X-Forwarded-For/-Proto, X-Request-Id, traceparent",
    "routing": "edge proxy, routing only",
    "full": "edge proxy, everything on",
    "nginx-cached": "nginx, proxy_cache (cached read)",
    "cached": "edge proxy, edge cache (cached read)",
}


def parse(path):
    rows = []
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if m:
            # perf pads symbols into columns ("name   -   -"): keep the name only.
            symbol = re.sub(r"(\s+-)+\s*$|\s+\.\.\.$", "", m.group(4).rstrip()).strip()
            rows.append((float(m.group(1)), m.group(2), m.group(3), symbol))
    return rows


def area(dso, kind, symbol):
    if kind == "k":
        return "kernel"
    if dso.startswith("nginx"):
        return "nginx (its binary)"
    for name, pattern in AREAS:
        if re.search(pattern, symbol):
            return name
    if "libc" in dso:
        return "libc other"
    return "other user space"


def main():
    work, out, cpu = sys.argv[1:4]
    targets = sys.argv[4:]
    lines = [
        "# Where the CPU goes",
        "",
        "Machine: %s. `bench/profile.sh`: perf (cpu-clock, 2999 Hz) on the proxy's process during"
        % cpu,
        "one wrk run of `make bench`'s load (32 connections, wrk on CPU 1, proxy and upstream on",
        "CPU 0); the Rust binaries built with the `profiling` profile (release with symbols).",
        "Shares are of the process's samples; functions inlined into a caller count as the caller.",
        "",
    ]
    summary = []
    for target in targets:
        rows = parse("%s/%s.txt" % (work, target))
        wrk = json.loads(open("%s/%s.wrk" % (work, target)).read().strip() or "{}")
        total = sum(r[0] for r in rows) or 1
        areas = {}
        for share, dso, kind, symbol in rows:
            key = area(dso, kind, symbol)
            areas[key] = areas.get(key, 0) + share
        summary.append((target, wrk.get("rps", 0), areas, total))
        lines += [
            "## %s: %.0f req/s during the profile" % (NAMES.get(target, target), wrk.get("rps", 0)),
            "",
            "| area | share |",
            "|---|---:|",
        ]
        for key, share in sorted(areas.items(), key=lambda kv: -kv[1]):
            lines.append("| %s | %.1f %% |" % (key, share * 100 / total))
        lines += ["", "Top functions (self time):", "", "| share | where | function |", "|---:|---|---|"]
        for share, dso, kind, symbol in rows[:25]:
            symbol = symbol if len(symbol) <= 110 else symbol[:107] + "..."
            lines.append("| %.1f %% | %s | `%s` |" % (share * 100 / total, "kernel" if kind == "k" else dso, symbol.replace("|", "\\|")))
        lines.append("")
    text = "\n".join(lines) + "\n"
    open(out, "w").write(text)
    print(text)


if __name__ == "__main__":
    main()
