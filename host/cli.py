"""The Pi service's command line: ``smartpdu-serve --config FILE`` (also ``python -m host``),
which the systemd unit runs, and the service's own commands that ``smartpdu`` dispatches to
(``serve``, ``passwd``). Nothing here imports the tools: ``tools.cli`` imports this."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="config file (TOML)")


def cmd_serve(args: argparse.Namespace) -> int:
    """The aggregator until SIGINT/SIGTERM: bus master, meter reader, web interface."""
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
    """``smartpdu passwd ...``: the web interface's admin password (its own argument parser)."""
    from host.web import auth

    return int(auth.passwd_main(args.rest))


def main(argv: list[str] | None = None) -> int:
    """``smartpdu-serve --config FILE``: the same as ``smartpdu serve --config FILE``."""
    parser = argparse.ArgumentParser(
        prog="smartpdu-serve", description="smartPDU aggregator on a Pi: bus, meter, web UI"
    )
    add_serve_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return cmd_serve(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
