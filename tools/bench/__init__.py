"""Benchmarks printed by ``smartpdu bench --json NAME``: figures, never timed assertions."""
