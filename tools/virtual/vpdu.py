"""Virtual smartPDU: the bus, one virtual board per group, the mains status node and the meter,
driven by a scenario (``tools/virtual/scenario.py``).

Pieces (all real: the aggregator cannot tell them from hardware):

* ``VirtualBus`` (in this process): the RS-485 line at ``baud`` with real byte timing.  Two
  pseudo-terminal endpoints: ``master`` for the aggregator and ``monitor`` (listen-only) for a
  bus monitor.  Boards connect to its UNIX socket.
* One ``VirtualBoard`` per group (a MicroPython process running ``firmware/app.py``), started
  unassigned: the aggregator's discovery gives them addresses.  Each is in its own session
  (process group); ``stop()`` kills them all, also when ``start()`` fails half way; an
  ``atexit`` hook kills any still registered if the interpreter exits without ``stop()``,
  and a small reaper process kills them if this process is killed outright (SIGKILL).
* The mains status node (role ``mains``): breaker contacts, Emergency Stop, loss of Neutral.
* ``MeterSim`` (in this process): the SDM630 on its own pty at ``meter_baud``.

``PduState`` is the electrical state the scenario drives, without I/O: which load each
output feeds, tripped RCBOs, the main breaker, auxiliary loads.  Each output's load goes to
its board (``set_load``: the board synthesises the waveform and measures it) and, as a
``metersim.Load`` of the same RMS, power factor and harmonics, to the meter on that output's
phase, so the meter's phase current is the phasor sum of the outputs' currents plus the
auxiliary loads (and the neutral current follows from the meter model).  A motor's inrush is
followed on the meter too.

Python API::

    pdu = VirtualPdu(load_scenario("rehearsal"), workdir, speed=1.0)
    await pdu.start()
    pdu.ports.master, pdu.ports.monitor, pdu.ports.meter
    pdu.expected_channel_amps("B", 4); pdu.expected_phase_amps("L2")
    await pdu.estop(True); await pdu.power_loss(3.0); await pdu.set_channel("A", 1, "led", 5.0)
    await pdu.stop()

Command line (``smartpdu sim``; until wired, ``python -m tools.virtual.vpdu``)::

    smartpdu sim [--scenario rehearsal] [--speed 1] [--workdir DIR] [--baud 115200]
                 [--meter-baud 9600] [--duration S] [--list]

prints one JSON line ``{"master", "monitor", "meter", "baud", "meter_baud", "scenario",
"model", "groups", "pid", "pids"}`` on stdout, a summary and the show's log on stderr, and
runs until Ctrl-C or SIGTERM (or ``--duration``), then stops everything and exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence

from protocol.consts import BUS_BAUD
from tools.virtual.pdu import PduPorts, VirtualPdu, VirtualPduError
from tools.virtual.pdu_state import PduState
from tools.virtual.scenario import (
    Scenario,
    ScenarioError,
    load_scenario,
    scenario_names,
)
from tools.virtual.vboard import VirtualBoardError

__all__ = ["PduPorts", "PduState", "VirtualPdu", "VirtualPduError", "main"]

# Ctrl-C, kill, and a closed terminal: the boards (own sessions) get none of them, so this
# process must stop them.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


# ---------------------------------------------------------------------- command line


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="smartpdu sim",
        description="Run a virtual smartPDU: virtual boards on a virtual RS-485 bus and a "
        "simulated meter, playing a load scenario. Prints the serial ports as JSON.",
    )
    parser.add_argument(
        "--scenario",
        default="rehearsal",
        help="scenario name (tools/virtual/scenarios/NAME.toml) or path to a .toml file",
    )
    parser.add_argument("--speed", type=float, default=1.0, help="time line speed factor")
    parser.add_argument("--workdir", help="sockets and board flash (default: a temp dir)")
    parser.add_argument("--baud", type=int, default=BUS_BAUD, help="RS-485 bus baud rate")
    parser.add_argument(
        "--meter-baud", type=int, default=9600, choices=[2400, 4800, 9600, 19200, 38400]
    )
    parser.add_argument("--unit-id", default="sim", help="prefix of the boards' unique ids")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--list", action="store_true", help="list the shipped scenarios")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("-q", "--quiet", action="store_true", help="no show log on stderr")
    return parser


async def _run(args: argparse.Namespace, scenario: Scenario) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in _STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    pdu = VirtualPdu(
        scenario,
        args.workdir,
        baud=args.baud,
        meter_baud=args.meter_baud,
        speed=args.speed,
        unit_id=args.unit_id,
    )
    try:
        starting = asyncio.create_task(pdu.start())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()  # a signal during boot: stop() below cleans up
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            return 0
        stopping.cancel()
        starting.result()
        info = {
            **dataclasses.asdict(pdu.ports),
            "baud": pdu.baud,
            "meter_baud": pdu.meter_baud,
            "meter_device_id": pdu.meter.device_id,
            "scenario": scenario.name,
            "model": scenario.model,
            "groups": scenario.groups,
            "pid": os.getpid(),
            "pids": pdu.pids(),
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        print(pdu.summary(), file=sys.stderr, flush=True)
        if args.duration is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.duration)
        else:
            await stop.wait()
        return 0
    finally:
        await pdu.stop()
        for sig in _STOP_SIGNALS:
            loop.remove_signal_handler(sig)


def main(argv: Sequence[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.list:
        for name in scenario_names():
            print(name)
        return 0
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # meter timeouts are expected
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"smartpdu sim: {exc}", file=sys.stderr)
        return 2
    if not args.speed > 0:
        print("smartpdu sim: --speed must be > 0", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(args, scenario))
    except (VirtualPduError, VirtualBoardError) as exc:
        print(f"smartpdu sim: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
