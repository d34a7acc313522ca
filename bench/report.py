#!/usr/bin/env python3
"""Writes bench/results/latest.md and its chart (SVG) from the JSON lines bench/run.sh
measured: `report.py DATA.json OUT.md OUT.svg`. The chart is plain SVG written here, so the
report needs nothing beyond Python's standard library."""

import json
import sys
from html import escape


def load(path):
    items = [json.loads(line) for line in open(path) if line.strip()]
    meta = next(i for i in items if i["kind"] == "meta")
    kinds = {}
    for item in items:
        kinds.setdefault(item["kind"], []).append(item)
    return meta, kinds


def proxy_table(meta, rows, allocs):
    by_name = {r["name"]: r for r in rows}
    nginx, direct = by_name["nginx"], by_name["direct"]
    bare = by_name.get("pingora, bare (no filters)")
    alloc = {a["name"]: a for a in allocs}
    lines = [
        "# Benchmark results",
        "",
        "Machine: %s, %d cores. wrk on CPU 1; proxy and upstream on CPU 0; %d connections;"
        % (meta["cpu"], meta["cores"], meta["connections"]),
        "median of %d run(s) of %s each. Upstream: nginx returning a small JSON body (keep-alive)."
        % (meta["runs"], meta["duration"]),
        "Every row down to *everything on* takes its runs in turn with the others (each server",
        "up and idle while another is measured), so drift in this machine's speed falls on all",
        "alike and the ratios between them come from runs seconds apart.",
        "",
        "| configuration | requests/s | p50 | p99 | p99.9 | rps vs nginx | rps vs bare Pingora "
        "| p99 vs nginx | added p50 over direct | CPU per request | allocations per request "
        "| errors / non-2xx |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        a = alloc.get(r["name"])
        lines.append(
            "| %s | %.0f | %d us | %d us | %d us | %.2fx | %s | %.2fx | %+d us | %s | %s | %d / %d |"
            % (
                r["name"],
                r["rps"],
                r["p50_us"],
                r["p99_us"],
                r["p999_us"],
                r["rps"] / nginx["rps"],
                "%.2fx" % (r["rps"] / bare["rps"]) if bare else "-",
                r["p99_us"] / max(nginx["p99_us"], 1),
                r["p50_us"] - direct["p50_us"],
                "%.1f us" % r["cpu_us_per_request"] if r.get("cpu_us_per_request") else "-",
                "%.1f (%.0f B)" % (a["allocs_per_request"], a["bytes_per_request"]) if a else "-",
                r["errors"],
                r["non2xx"],
            )
        )
    lines += [
        "",
        "CPU per request: CPU time of the process serving that row (every thread; for *direct*,",
        "the upstream nginx itself), from /proc/<pid>/task/*/schedstat over each wrk run, divided",
        "by that run's requests. Allocations per request: a separate 2 s run of",
        "`examples/counting_proxy.rs`, the same proxy behind a counting allocator.",
        "",
        "Pingora, bare = Pingora's proxy with an empty filter set and one upstream",
        "(edge-proxy/examples/bare_pingora.rs), same thread count, allocator and tuning as the edge",
        "proxy.",
        "",
        "Everything on = API-key auth, rate limit (set high enough not to reject), circuit breakers,",
        "two instances with least-in-flight balancing and health checks, metrics, and a JSON",
        "access-log line per request written to a file (%d lines in the last run)."
        % meta["access_lines"],
        "",
        "Global limit (Redis) = everything on, with the rate limit counted in a local redis-server",
        "(`scope = \"global\"`, default lease of up to 10 tokens for 250 ms) instead of per replica.",
        "Its CPU per request is the proxy's only (Redis runs on the same CPU).",
        "",
        "Edge proxy RSS: idle %d KiB, under load %d KiB." % (meta["rss_idle_kb"], meta["rss_load_kb"]),
    ]
    cached_nginx = by_name.get("nginx, proxy_cache (cached read)")
    cached_edge = by_name.get("edge-proxy, edge cache (cached read)")
    if cached_nginx and cached_edge:
        lines += [
            "",
            "Cached reads (the upstream answers `Cache-Control: public, max-age=3600`; every request",
            "after the first is served from the proxy's cache; the rows' runs alternate, each row",
            "its median): the edge proxy's cache %.0f req/s,"
            % cached_edge["rps"],
            "nginx's `proxy_cache` %.0f req/s: **%.2fx** nginx's; p99 %d us against %d us."
            % (
                cached_nginx["rps"],
                cached_edge["rps"] / cached_nginx["rps"],
                cached_edge["p99_us"],
                cached_nginx["p99_us"],
            ),
        ]
    if meta.get("compare"):
        lines += [
            "",
            "Rows marked (%s): the edge proxy built from that commit, run in this same run with the"
            " same configs." % meta["compare"],
        ]
    return lines


def other_tables(kinds):
    lines = []
    if "limiter" in kinds:
        lines += [
            "",
            "Rate limiter memory (fixed table of 1 Mi cells), by distinct client keys:",
            "",
            "| keys | process RSS | growth over baseline | limiter table |",
            "|---:|---:|---:|---:|",
        ]
        for m in kinds["limiter"]:
            lines.append(
                "| %d | %d KiB | %d KiB | %d KiB |"
                % (m["keys"], m["rss_kb"], m["rss_growth_kb"], m["limiter_table_kb"])
            )
    if "function" in kinds:
        lines += [
            "",
            "Functions (cargo lambda build --release with opt-level z and fat LTO, stripped; cold",
            "start and idle RSS of the x86_64 build = process spawn to first answered invocation",
            "against a local Runtime API, median):",
            "",
            "| function | bootstrap x86_64 | bootstrap arm64 | cold start | idle RSS |",
            "|---|---:|---:|---:|---:|",
        ]
        for f in kinds["function"]:
            arm = "%d KiB" % (f["arm_bytes"] // 1024) if f["arm_bytes"] else "n/a"
            lines.append(
                "| %s | %d KiB | %s | %.1f ms | %d KiB |"
                % (f["name"], f["x86_bytes"] // 1024, arm, f["cold_ms"], f["idle_rss_kb"])
            )
    if "warm" in kinds:
        lines += [
            "",
            "**Local-dev figure, not an AWS one**: warm latency through the proxy, cargo lambda",
            "watch (debug build) and moto, 4 connections:",
            "",
            "| request | requests/s | p50 | p99 |",
            "|---|---:|---:|---:|",
        ]
        for w in kinds["warm"]:
            lines.append(
                "| %s | %.0f | %d us | %d us |" % (w["name"], w["rps"], w["p50_us"], w["p99_us"])
            )
    return lines


def chart(meta, rows):
    """Two horizontal bar panels: requests/s and CPU per request, one bar a row."""
    label_w, bar_w, gap, bar_h = 250, 300, 60, 22
    width = label_w + 2 * bar_w + gap + 90
    height = 70 + len(rows) * (bar_h + 8) + 30
    max_rps = max(r["rps"] for r in rows)
    max_cpu = max(r.get("cpu_us_per_request") or 0 for r in rows) or 1
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
        'font-family="sans-serif" font-size="12">' % (width, height),
        '<rect width="100%" height="100%" fill="white"/>',
        '<text x="10" y="20" font-size="14" font-weight="bold">%s</text>'
        % escape("Proxy overhead, one run: %s, %d cores, %d connections" % (meta["cpu"], meta["cores"], meta["connections"])),
        '<text x="%d" y="48" font-weight="bold">requests/s (higher is better)</text>' % label_w,
        '<text x="%d" y="48" font-weight="bold">CPU per request, us (lower is better)</text>'
        % (label_w + bar_w + gap),
    ]
    for i, r in enumerate(rows):
        y = 60 + i * (bar_h + 8)
        ours = r["name"].startswith("edge-proxy")
        colour = "#d9822b" if ours else "#4a7fb5"
        w = bar_w * r["rps"] / max_rps
        out.append('<text x="%d" y="%d" text-anchor="end">%s</text>' % (label_w - 8, y + 15, escape(r["name"])))
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (label_w, y, w, bar_h, colour))
        out.append('<text x="%.1f" y="%d">%.0f</text>' % (label_w + w + 4, y + 15, r["rps"]))
        cpu = r.get("cpu_us_per_request") or 0
        x0 = label_w + bar_w + gap
        cw = bar_w * cpu / max_cpu
        out.append('<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>' % (x0, y, cw, bar_h, colour))
        out.append('<text x="%.1f" y="%d">%.1f</text>' % (x0 + cw + 4, y + 15, cpu))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    data, md_path, svg_path = sys.argv[1:4]
    meta, kinds = load(data)
    rows = kinds["row"]
    lines = proxy_table(meta, rows, kinds.get("allocs", []))
    lines += other_tables(kinds)
    lines += ["", "Chart: [latest.svg](latest.svg)."]
    text = "\n".join(lines) + "\n"
    open(md_path, "w").write(text)
    open(svg_path, "w").write(chart(meta, rows))
    print(text)


if __name__ == "__main__":
    main()
