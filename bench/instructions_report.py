#!/usr/bin/env python3
"""Reduces bench/instructions.sh's callgrind counts to bench/results/instructions.md: per
proxy, user-space instructions per request, by area of code, and for the edge proxy the
functions whose own instructions differ most from bare Pingora's.
`instructions_report.py WORKDIR OUT.md CPU TARGET...` (TARGET: bare, routing, full, or one of
those with `-<ref>` for a compare build)."""

import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from profile_report import AREAS, NAMES  # noqa: E402  (the perf profile's areas and names)

# callgrind_annotate's function lines: "  1,234 (12.34%)  file:function [object]"
LINE = re.compile(r"^\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*?)(?: \[(.*)\])?$")


def parse(path):
    """Instructions by function (self), the source file's path dropped."""
    counts = {}
    for line in open(path, errors="replace"):
        m = LINE.match(line)
        if not m or "PROGRAM TOTALS" in line:
            continue
        # "file:function", the file absolute, relative or "???": keep the function.
        name = re.sub(r"^(\?\?\?|[^\s:]*\.(rs|c|h|S)):", "", m.group(2))
        counts[name] = counts.get(name, 0) + int(m.group(1).replace(",", ""))
    return counts


def area(symbol):
    for name, pattern in AREAS:
        if re.search(pattern, symbol):
            return name
    if re.search(r"GLIBC|^__|^_IO|^clock_|^epoll|^send|^recv|^read|^write", symbol):
        return "libc other"
    return "other user space"


def per_request(work, target):
    wrk = json.loads(open("%s/%s.wrk" % (work, target)).read().strip())
    requests = max(wrk["requests"], 1)
    counts = parse("%s/%s.txt" % (work, target))
    return requests, {k: v / requests for k, v in counts.items()}


def kernel(work, target):
    """Syscalls and context switches per request of the native run (perf stat -x,)."""
    wrk = json.loads(open("%s/%s.native" % (work, target)).read().strip())
    counts = {}
    for line in open("%s/%s.perf" % (work, target)):
        fields = line.strip().split(",")
        if len(fields) > 2 and fields[0].replace(".", "").isdigit():
            counts[fields[2]] = float(fields[0])
    requests = max(wrk["requests"], 1)
    return (
        counts.get("raw_syscalls:sys_enter", 0) / requests,
        counts.get("context-switches", 0) / requests,
    )


def main():
    work, out, cpu = sys.argv[1:4]
    targets = sys.argv[4:]

    def title(target):
        base, _, ref = target.partition("-")
        return NAMES[base] + (" (%s)" % ref if ref else "")

    data = {t: per_request(work, t) for t in targets}
    bare = data["bare"][1]
    bare_total = sum(bare.values())
    lines = [
        "# Instructions per request",
        "",
        "Machine: %s. `bench/instructions.sh`: callgrind on the proxy's process (every thread)" % cpu,
        "during one wrk run (4 connections), instrumentation on after a warm-up; the Rust",
        "binaries built with the `profiling` profile. User space only: the kernel's share (more",
        "than half the CPU here, see `profile.md`) is not in these counts, nor are cache misses.",
        "Functions inlined into a caller count as the caller. Under valgrind each wake-up finds",
        "fewer requests ready than at full speed, so the event loop's share is larger than it",
        "is in `make bench`. Syscalls and context switches: `perf stat` on the proxy run",
        "natively under `make bench`'s load (32 connections), over the same duration.",
        "",
        "| configuration | requests counted | instructions per request | over bare Pingora"
        " | syscalls per request | context switches per request |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for target in targets:
        requests, counts = data[target]
        total = sum(counts.values())
        syscalls, switches = kernel(work, target)
        lines.append(
            "| %s | %d | %.0f | %+.0f | %.2f | %.2f |"
            % (title(target), requests, total, total - bare_total, syscalls, switches)
        )
    areas_of = {}
    for target in targets:
        areas = {}
        for symbol, n in data[target][1].items():
            key = area(symbol)
            areas[key] = areas.get(key, 0) + n
        areas_of[target] = areas
    keys = sorted(areas_of["bare"].keys() | {k for a in areas_of.values() for k in a},
                  key=lambda k: -max(a.get(k, 0) for a in areas_of.values()))
    lines += ["", "By area (instructions per request):", ""]
    lines.append("| area | " + " | ".join(title(t) for t in targets) + " |")
    lines.append("|---|" + "---:|" * len(targets))
    for key in keys:
        lines.append(
            "| %s | " % key + " | ".join("%.0f" % areas_of[t].get(key, 0) for t in targets) + " |"
        )
    for target in targets:
        if target == "bare":
            continue
        counts = data[target][1]
        rows = sorted(counts.keys() | bare.keys(),
                      key=lambda k: -(counts.get(k, 0) - bare.get(k, 0)))
        lines += [
            "",
            "## %s: the largest differences from bare Pingora" % title(target),
            "",
            "| over bare | bare | this | function (own instructions per request) |",
            "|---:|---:|---:|---|",
        ]
        for symbol in rows[:25]:
            mine, theirs = counts.get(symbol, 0), bare.get(symbol, 0)
            lines.append("| %+.0f | %.0f | %.0f | `%s` |" % (mine - theirs, theirs, mine, symbol[:140]))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines[:12 + len(targets)]))


if __name__ == "__main__":
    main()
