"""Summarise py-spy folded stacks (``run --profile DIR``): where each thread spends its samples.

    .venv/bin/python -m benchmarks.folded DIR/comms-1.txt [--top 25] [--thread NAME]

Prints samples per thread, then the frames with the most samples: "self" (the
frame was on top of the stack) and "total" (anywhere on the stack), each as a
share of all samples of the selected threads.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"^thread \((\w+)\)(?:: ?(.*))?$")


def parse(path: Path) -> list[tuple[str, list[str], int]]:
    """(thread name, frames outermost first, samples) per line."""
    out = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        name = "?"
        match = _THREAD.match(frames[0])
        if match is not None:
            name = match.group(2) or f"thread {match.group(1)}"
            frames = frames[1:]
        out.append((name, frames, int(count)))
    return out


def _short(frame: str) -> str:
    return re.sub(r"\(/[^)]*?/(site-packages|src|lib/python3\.\d+)/", "(", frame)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="benchmarks.folded")
    parser.add_argument("path", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--thread", help="only threads whose name contains this")
    args = parser.parse_args(argv)
    stacks = parse(args.path)
    per_thread: Counter[str] = Counter()
    for name, _, count in stacks:
        per_thread[name] += count
    total_all = sum(per_thread.values()) or 1
    print("samples per thread")
    for name, count in per_thread.most_common():
        print(f"  {count:7d} {count / total_all:6.1%}  {name}")
    if args.thread:
        stacks = [s for s in stacks if args.thread in s[0]]
    total = sum(c for _, _, c in stacks) or 1
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for _, frames, count in stacks:
        if frames:
            self_time[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    for title, counter in (("self", self_time), ("total", inclusive)):
        print(f"\ntop frames by {title} samples ({total} samples)")
        for frame, count in counter.most_common(args.top):
            print(f"  {count:7d} {count / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
