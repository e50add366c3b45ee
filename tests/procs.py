"""Processes seen through /proc, for tests that must leave no process behind."""

from __future__ import annotations

import os


def stat(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: state, ppid, …, utime (11), stime (12), start
    time (19); None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def is_zombie(pid: int) -> bool:
    """Gone, or a zombie waiting for its parent: not running any more."""
    fields = stat(pid)
    return fields is None or fields[0] == "Z"


def descendants(pid: int) -> set[int]:
    """Every descendant of ``pid`` (walking /proc by parent)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = stat(int(entry))
            if fields is not None:
                parents[int(entry)] = int(fields[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found
