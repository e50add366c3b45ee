"""The ``smartpdu`` command."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

BenchRunner = Callable[[], dict[str, Any]]


def _bench_protocol() -> dict[str, Any]:
    from host.bench import protocol_bench

    return protocol_bench.run()


def _bench_firmware() -> dict[str, Any]:
    from tools import bench_firmware

    return bench_firmware.run()


BENCHMARKS: dict[str, BenchRunner] = {
    "protocol": _bench_protocol,
    "firmware": _bench_firmware,
}


def cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"smartpdu bench: unknown benchmark {', '.join(unknown)}; "
              f"choose from {', '.join(BENCHMARKS)} or all", file=sys.stderr)  # fmt: skip
        return 2
    figures: dict[str, Any] = {}
    for name in names:
        figures.update(BENCHMARKS[name]())
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in sorted(figures.items()):
            print(f"{key:45s} {value}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from host import demo

    return demo.main(cycles=args.cycles)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartpdu", description="smartPDU monitoring")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="run benchmarks and print their figures")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench.add_argument("names", nargs="*", default=["all"], help=f"{', '.join(BENCHMARKS)} or all")
    bench.set_defaults(func=cmd_bench)

    run = sub.add_parser("run", help="the main job: a virtual smartPDU (no hardware needed)")
    run.add_argument("--cycles", type=int, default=0, help="stop after N cycles (0 = forever)")
    run.set_defaults(func=cmd_run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
