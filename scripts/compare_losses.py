#!/usr/bin/env python3
"""Compare the per-step training losses of two runs' metrics.csv files.

Usage: compare_losses.py A/metrics.csv B/metrics.csv [--rtol 1e-5]

Exits 1 (printing the first differing step) unless both runs logged the same steps and
every loss agrees within rtol. CI uses it to check that a hot-switching run under MPI
equals the same run on threads ranks.
"""
import argparse
import csv
import sys


def losses(path):
    with open(path, newline="") as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--rtol", type=float, default=1e-5)
    args = parser.parse_args()
    a, b = losses(args.a), losses(args.b)
    if a.keys() != b.keys() or not a:
        print(f"steps differ: {sorted(a)} vs {sorted(b)}")
        return 1
    for step in sorted(a):
        x, y = a[step], b[step]
        if abs(x - y) > args.rtol * max(abs(x), abs(y)):
            print(f"step {step}: loss {x} vs {y} (rtol {args.rtol})")
            return 1
    print(f"{len(a)} steps agree within rtol {args.rtol}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
