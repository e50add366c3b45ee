"""The ``smartpdu`` command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BenchRunner = Callable[[], dict[str, Any]]


def _bench_protocol() -> dict[str, Any]:
    from host.bench import protocol_bench

    return protocol_bench.run()


def _bench_firmware() -> dict[str, Any]:
    from tools import bench_firmware

    return bench_firmware.run()


def _bench_aggregator() -> dict[str, Any]:
    from host.bench import aggregator_bench

    return aggregator_bench.run()


def _bench_web() -> dict[str, Any]:
    from host.bench import web_bench

    return web_bench.run()


def _bench_peers() -> dict[str, Any]:
    from host.bench import peers_bench

    return peers_bench.run()


BENCHMARKS: dict[str, BenchRunner] = {
    "protocol": _bench_protocol,
    "firmware": _bench_firmware,
    "aggregator": _bench_aggregator,
    "web": _bench_web,
    "peers": _bench_peers,
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
        try:
            figures.update(BENCHMARKS[name]())
        except ModuleNotFoundError as exc:
            figures[f"{name}.error"] = f"not available: {exc}"
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in sorted(figures.items()):
            print(f"{key:45s} {value}")
    return 0


_REEXEC = "from host.cli import main; raise SystemExit(main())"


def cmd_run(args: argparse.Namespace) -> int:
    from host import runvirtual

    config = Path(args.config) if args.config is not None else None
    rp2 = tuple(g.strip().upper() for g in (args.rp2 or "").split(",") if g.strip())
    if rp2 and args.time_scale < 1:
        from tools import timescale

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
    from host import demo

    return demo.main(cycles=args.cycles)


def cmd_sim(args: argparse.Namespace) -> int:
    from tools import vpdu

    return vpdu.main(args.rest)


def cmd_serve(args: argparse.Namespace) -> int:
    from host.config import ConfigError, load_config
    from host.service import Service
    from host.transport import TransportError
    from host.web import start_web

    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.line, file=sys.stderr)
        return 2

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await Service(config, web=start_web).run()

    try:
        asyncio.run(serve())
    except TransportError as exc:
        print(f"smartpdu serve: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_passwd(args: argparse.Namespace) -> int:
    from host.web import auth

    return int(auth.passwd_main(args.rest))


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
    serve.add_argument("--config", required=True, help="config file (TOML)")
    serve.set_defaults(func=cmd_serve)

    sim = sub.add_parser("sim", help="a virtual smartPDU for an aggregator to connect to",
                         add_help=False)  # fmt: skip
    sim.add_argument("rest", nargs=argparse.REMAINDER)
    sim.set_defaults(func=cmd_sim)

    bench = sub.add_parser("bench", help="run benchmarks and print their figures")
    bench.add_argument("--json", action="store_true", help="one JSON object on stdout")
    bench.add_argument("names", nargs="*", default=["all"], help=f"{', '.join(BENCHMARKS)} or all")
    bench.set_defaults(func=cmd_bench)

    passwd = sub.add_parser("passwd", help="set the web interface's admin password",
                            add_help=False)  # fmt: skip
    passwd.add_argument("rest", nargs=argparse.REMAINDER)
    passwd.set_defaults(func=cmd_passwd)

    from host import flash
    from tools import busmon, console

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
    "passwd": cmd_passwd,
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
