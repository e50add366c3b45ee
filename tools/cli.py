"""The ``smartpdu`` command: dispatches ``serve`` and ``passwd`` to the Pi service
(``host.cli``, which never imports the tools) and the other commands to the tools: the virtual
PDU (``run``, ``sim``), the field tools (``flash``, ``console``, ``busmon``, ``demo``) and the
benchmarks (``bench``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from host import cli as service_cli
from tools.bench import repeat

BenchRunner = Callable[[], dict[str, Any]]


def _bench_protocol() -> dict[str, Any]:
    from tools.bench import protocol_bench

    return protocol_bench.run()


def _bench_firmware() -> dict[str, Any]:
    from tools.bench import firmware_bench

    return firmware_bench.run()


def _bench_aggregator() -> dict[str, Any]:
    from tools.bench import aggregator_bench

    return aggregator_bench.run()


def _bench_web() -> dict[str, Any]:
    from tools.bench import web_bench

    return web_bench.run()


def _bench_peers() -> dict[str, Any]:
    from tools.bench import peers_bench

    return peers_bench.run()


BENCHMARKS: dict[str, BenchRunner] = {
    "protocol": _bench_protocol,
    "firmware": _bench_firmware,
    "aggregator": _bench_aggregator,
    "web": _bench_web,
    "peers": _bench_peers,
}


# The firmware bench repeats inside (its figures are deterministic on the unix ports and the
# emulated chip runs for minutes); the others run three times unless --reps says otherwise.
DEFAULT_REPETITIONS = {"firmware": 1}


def cmd_bench(args: argparse.Namespace) -> int:
    names = list(BENCHMARKS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"smartpdu bench: unknown benchmark {', '.join(unknown)}; "
              f"choose from {', '.join(BENCHMARKS)} or all", file=sys.stderr)  # fmt: skip
        return 2
    if args.reps is not None and args.reps < 1:
        print("smartpdu bench: --reps is at least 1", file=sys.stderr)
        return 2
    figures: dict[str, Any] = {}
    for name in names:
        reps = args.reps if args.reps is not None else DEFAULT_REPETITIONS.get(name, 3)
        try:
            figures.update(repeat.repeated(name, BENCHMARKS[name], reps))
        except ModuleNotFoundError as exc:
            figures[f"{name}.error"] = f"not available: {exc}"
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in sorted(figures.items()):
            print(f"{key:45s} {value}")
    return 0


_REEXEC = "from tools.cli import main; raise SystemExit(main())"


def cmd_run(args: argparse.Namespace) -> int:
    from tools.virtual import runvirtual

    config = Path(args.config) if args.config is not None else None
    rp2 = tuple(g.strip().upper() for g in (args.rp2 or "").split(",") if g.strip())
    if rp2 and args.time_scale < 1:
        from tools.virtual import timescale

        if timescale.active_scale() == 1.0:
            # Emulated RP2040s run slower than real time: run the whole unit in slow motion.
            try:
                argv = timescale.faketime_command(
                    [sys.executable, "-c", _REEXEC, *sys.argv[1:]], args.time_scale
                )
            except timescale.TimeScaleError as exc:
                print(f"smartpdu run: {exc}", file=sys.stderr)
                return 2
            print(
                f"smartpdu run: emulated RP2040 boards {', '.join(rp2)}: "
                f"running at {args.time_scale:g} x real time",
                flush=True,
            )
            os.execve(argv[0], argv, timescale.scaled_env(args.time_scale))
    return runvirtual.main(args.scenario, args.host, args.port, args.speed, config, rp2)


def cmd_demo(args: argparse.Namespace) -> int:
    from tools.field import demo

    return demo.main(cycles=args.cycles)


def cmd_sim(args: argparse.Namespace) -> int:
    from tools.virtual import vpdu

    return vpdu.main(args.rest)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartpdu", description="smartPDU monitoring")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the main job: a virtual smartPDU with its web UI")
    run.add_argument("--scenario", default="rehearsal", help="show scenario (default rehearsal)")
    run.add_argument("--config", help="config file (TOML, as for serve; ports not needed)")
    run.add_argument("--host", help="web interface address (default: the config's, 0.0.0.0)")
    run.add_argument("--port", type=int, help="web interface port (default: the config's, 8080)")
    run.add_argument("--speed", type=float, default=1.0, help="scenario time line speed")
    run.add_argument(
        "--rp2",
        metavar="GROUPS",
        help="groups whose board is an emulated RP2040 running the production image (A or A,C)",
    )
    run.add_argument(
        "--time-scale",
        type=float,
        default=0.2,
        help="with --rp2: run the whole virtual unit at this fraction of real time so the "
        "emulated chips keep their bus slots (default 0.2; 1 = real time, slots will be missed)",
    )
    run.set_defaults(func=cmd_run)

    serve = sub.add_parser("serve", help="the aggregator on a Pi: bus, meter, web UI")
    service_cli.add_serve_arguments(serve)
    serve.set_defaults(func=service_cli.cmd_serve)

    sim = sub.add_parser("sim", help="a virtual smartPDU for an aggregator to connect to",
                         add_help=False)  # fmt: skip
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_sim)

    bench = sub.add_parser("bench", help="run benchmarks and print their figures")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench.add_argument(
        "--reps",
        type=int,
        default=None,
        help="repetitions of each benchmark (default 3, firmware 1): median and worst reported",
    )
    bench.add_argument("names", nargs="*", default=["all"], help=f"{', '.join(BENCHMARKS)} or all")
    bench.set_defaults(func=cmd_bench)

    passwd = sub.add_parser("passwd", help="set the web interface's admin password",
                            add_help=False)  # fmt: skip
    passwd.add_argument("rest", nargs=argparse.REMAINDER)
    passwd.set_defaults(func=service_cli.cmd_passwd)

    from tools.field import busmon, console, flash

    flash_parser = sub.add_parser("flash", help="compile and upload firmware to group boards")
    flash.add_arguments(flash_parser)
    flash_parser.set_defaults(func=flash.run)

    console_parser = sub.add_parser("console", help="serial debug console to one board")
    console.add_arguments(console_parser)
    console_parser.set_defaults(func=console.run)

    busmon_parser = sub.add_parser("busmon", help="passive RS-485 bus monitor")
    busmon.add_arguments(busmon_parser)
    busmon_parser.set_defaults(func=busmon.run)

    demo = sub.add_parser("demo", help="protocol demo: a MicroPython board streams frames")
    demo.add_argument("--cycles", type=int, default=0, help="stop after N frames (0 = forever)")
    demo.set_defaults(func=cmd_demo)
    return parser


# Commands with their own argument parser: everything after the command name is theirs
# (argparse.REMAINDER would refuse "smartpdu passwd --config FILE" as unknown options).
PASSTHROUGH: dict[str, Callable[[argparse.Namespace], int]] = {
    "sim": cmd_sim,
    "passwd": service_cli.cmd_passwd,
}


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    if words and words[0] in PASSTHROUGH:
        func, args = PASSTHROUGH[words[0]], argparse.Namespace(rest=words[1:])
    else:
        args = build_parser().parse_args(words)
        func = args.func
    try:
        return int(func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
