"""A short summary of a py-spy `--format raw` profile (collapsed stacks, one `stack count` a line):
where the samples end (socket I/O, the database drivers, SQLAlchemy, pydantic, our code...) and
the project's functions by inclusive share.

    python -m bench.profile FILE.pyspy.txt
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<path>[^()]*?)(?::\d+)?\)$")


def _where(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    path = match["path"].split("/site-packages/")[-1]
    path = re.sub(r"^.*?/(shared|services|bench|faults)/", r"\1/", path)
    return match["name"], path


def _category(name: str, path: str) -> str:
    if "selector_events" in path or name in {"send", "recv"}:
        return "socket I/O (asyncio transport)"
    if path.startswith("selectors") or name == "select":
        return "waiting (epoll)"
    for prefix, label in (
        ("asyncpg", "asyncpg"),
        ("sqlalchemy", "SQLAlchemy"),
        ("greenlet", "SQLAlchemy"),
        ("pydantic", "pydantic"),
        ("json", "json"),
        ("faststream", "FastStream"),
        ("fast_depends", "FastStream"),
        ("aiokafka", "aiokafka"),
        ("kafka", "aiokafka"),
        ("services/", "services (domain and handlers)"),
        ("shared/", "shared (messaging, contracts)"),
        ("asyncio", "asyncio loop"),
    ):
        if path.startswith(prefix):
            return label
    return "other"


def summarize(raw: Path, *, top: int = 25) -> str:
    total = 0
    leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_where(f) for f in stack.split(";")]
        leaf[_category(*frames[-1])] += n
        for name, path in set(frames):
            if path.startswith(("shared/", "services/")):
                inclusive[f"{name} ({path})"] += n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "where the samples end:"]
    lines += [f"  {100 * n / total:5.1f}%  {what}" for what, n in leaf.most_common()]
    lines += ["", "project functions, inclusive:"]
    lines += [f"  {100 * n / total:5.1f}%  {what}" for what, n in inclusive.most_common(top)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    for path in args:
        print(f"== {path}\n{summarize(Path(path))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
