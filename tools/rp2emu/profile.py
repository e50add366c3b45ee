"""Where the emulated RP2040's core spends its time: a board.mjs profile mapped to symbols.

``RP2EMU_PROFILE=FILE`` makes ``board.mjs`` count the program counter (and the link register)
of every 61st instruction the core executes and write the counts to FILE at exit.
``python -m tools.rp2emu.profile FILE [--elf ELF]`` prints the functions of the production
image's ELF that the samples fall in, and for the top ones who called them (from LR).
Sleeping (WFI/WFE) executes no instruction, so the shares are of the busy time.
"""

from __future__ import annotations

import argparse
import bisect
import json
import subprocess
from collections import Counter
from pathlib import Path

ELF = (
    Path(__file__).resolve().parents[2]
    / "build/rp2/src/micropython/ports/rp2/build-frozen/firmware.elf"
)


class Symbols:
    """Address -> function name, from ``arm-none-eabi-nm`` of the image."""

    def __init__(self, elf: Path) -> None:
        out = subprocess.run(
            ["arm-none-eabi-nm", "-n", "-S", "--defined-only", str(elf)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        rows: list[tuple[int, int, str]] = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 4 and parts[2] in "tTwWrRdD":
                rows.append((int(parts[0], 16), int(parts[1], 16), parts[3]))
        rows.sort()
        # Assembler labels have no size: they reach to the next symbol.
        for i, (start, size, name) in enumerate(rows[:-1]):
            if size == 0:
                rows[i] = (start, rows[i + 1][0] - start, name)
        self._starts = [r[0] for r in rows]
        self._rows = rows

    def name(self, addr: int) -> str:
        addr &= ~1
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            start, size, name = self._rows[i]
            if addr < start + max(size, 2):
                return name
        if 0x20000000 <= addr < 0x20042000:
            return "<RAM code>"
        if addr < 0x4000:
            return "<bootrom>"
        return f"<0x{addr:08x}>"


def report(path: Path, elf: Path, top: int = 40) -> str:
    data = json.loads(path.read_text())
    syms = Symbols(elf)
    by_fn: Counter[str] = Counter()
    for pc, n in data["pc"]:
        by_fn[syms.name(pc)] += n
    callers: dict[str, Counter[str]] = {}
    for pc, lr, n in data["pc_lr"]:
        callers.setdefault(syms.name(pc), Counter())[syms.name(lr)] += n
    total = data["samples"] or 1
    lines = [f"{total} samples (1 per {data['every']} instructions)"]
    for name, n in by_fn.most_common(top):
        who = ", ".join(f"{c} {100 * k / n:.0f}%" for c, k in callers[name].most_common(3))
        lines.append(f"{100 * n / total:6.2f}%  {name:40s}  <- {who}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="profile of the emulated RP2040's core")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--elf", type=Path, default=ELF)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    print(report(args.profile, args.elf, args.top))


if __name__ == "__main__":
    main()
