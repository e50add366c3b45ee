// Flash erase/program for rp2040js, through the bootrom's own flash functions.
//
// Why: rp2040js serves XIP reads from a byte array but its SSI answers no flash commands, so
// the bootrom's flash_range_erase/flash_range_program never change anything and MicroPython
// cannot format or write its littlefs filesystem (os.mkdir -> ENODEV). The pico-sdk (and so
// MicroPython's rp2.Flash) always goes through the bootrom function table, looked up by
// two-letter codes. We patch a copy of the bootrom so that each of those functions starts
// with a BKPT whose immediate says which one; the breakpoint handler does the operation on
// the flash array with NOR semantics (erase = 0xFF, program = AND) and returns to the
// caller (PC = LR), exactly as if the function had run.
//
// Codes handled: RE flash_range_erase(addr, count, block_size, cmd), RP flash_range_program
// (addr, data, count), and IF/EX/FC/CX (connect, exit XIP, flush cache, enter XIP): no-ops
// here, as the XIP array is always coherent.

const FUNCS = ['IF', 'EX', 'RE', 'RP', 'FC', 'CX'];
const BKPT_BASE = 0xa0; // BKPT #0xa0 + index: clear of anything the firmware itself uses
const SECTOR = 4096;

function romCode(name) {
  return name.charCodeAt(0) | (name.charCodeAt(1) << 8);
}

function halfword(rom, addr) {
  const word = rom[addr >>> 2];
  return addr & 2 ? word >>> 16 : word & 0xffff;
}

function setHalfword(rom, addr, value) {
  const i = addr >>> 2;
  rom[i] = addr & 2 ? (rom[i] & 0xffff) | (value << 16) : (rom[i] & 0xffff0000) | value;
}

/** A copy of `bootrom` (Uint32Array) whose flash functions trap; and their addresses. */
export function patchBootrom(bootrom) {
  const rom = new Uint32Array(bootrom);
  const table = halfword(rom, 0x14);
  const found = {};
  for (let p = table; ; p += 4) {
    const code = halfword(rom, p);
    if (!code) break;
    const index = FUNCS.findIndex((name) => romCode(name) === code);
    if (index >= 0) {
      const fn = halfword(rom, p + 2) & ~1;
      found[FUNCS[index]] = fn;
      setHalfword(rom, fn, 0xbe00 | (BKPT_BASE + index));
    }
  }
  const missing = FUNCS.filter((name) => !(name in found));
  if (missing.length) throw new Error(`bootrom has no ${missing.join(', ')} function`);
  return { rom, functions: found };
}

/**
 * Handle the traps of `patchBootrom` on `mcu` (an RP2040): returns a function for
 * `mcu.onBreak` that falls back to `otherBreak(code)` for any other breakpoint.
 * `stats` counts erases, programs and bytes; `onWrite(offset, length)` is called after each
 * change (e.g. to persist the flash image).
 */
export function flashBreakHandler(mcu, { otherBreak = () => {}, stats = {}, onWrite } = {}) {
  Object.assign(stats, { erases: 0, programs: 0, bytesErased: 0, bytesProgrammed: 0 });
  const { flash } = mcu;
  return (code) => {
    const index = code - BKPT_BASE;
    if (index < 0 || index >= FUNCS.length) {
      otherBreak(code);
      return;
    }
    const core = mcu.core;
    const r = core.registers;
    const name = FUNCS[index];
    if (name === 'RE') {
      const addr = r[0] >>> 0;
      const count = r[1] >>> 0;
      if (addr % SECTOR || count % SECTOR || addr + count > flash.length) {
        throw new Error(`flash_range_erase(0x${addr.toString(16)}, ${count}): not sector-aligned or past the end`);
      }
      flash.fill(0xff, addr, addr + count);
      stats.erases++;
      stats.bytesErased += count;
      onWrite?.(addr, count);
    } else if (name === 'RP') {
      const addr = r[0] >>> 0;
      const data = r[1] >>> 0;
      const count = r[2] >>> 0;
      if (addr + count > flash.length) throw new Error('flash_range_program past the end of flash');
      for (let i = 0; i < count; i++) flash[addr + i] &= mcu.readUint8(data + i);
      stats.programs++;
      stats.bytesProgrammed += count;
      onWrite?.(addr, count);
    }
    core.PC = core.LR & ~1;
  };
}
