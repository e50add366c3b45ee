#!/usr/bin/env node
// unittest.mjs — register-level checks of pio_clock.mjs and of rp2040js's DMA, no firmware.
//
// The core is parked (WFI, no interrupt enabled), state machines and DMA channels are
// programmed through the bus as firmware would, and edges are timed with loop.now():
//   1. PIO timing: `set pins [31]` toggling at a fractional divider: every edge on the
//      t(n) = floor(n * div) sys-clock grid, both in fast and naive mode
//   2. stall skip: a blocking `pull` on an empty TX FIFO costs no instructions while stalled
//      and resumes on the first PIO tick after the CPU-side FIFO write
//   3. DMA as Mcp3208Stream uses it: data channel (16-bit, DREQ PIO0 RX0, chain_to ctrl),
//      control channel (32-bit, ring_size 3 read wrap over a 2-word table, writes the data
//      channel's AL2_WRITE_ADDR_TRIG, irq_quiet), IRQ per data block; ping-pong order
//   4. FJOIN_RX: 8-deep RX FIFO
//   5. pacing: simulated time never ahead of wall time
// usage: node unittest.mjs [--echo]; exit 0 if all passed. Prints a JSON summary.

import { Simulator } from 'rp2040js';
import { installPioClock } from './pio_clock.mjs';
import { SampleRing, micropythonDivider } from './mcp3208.mjs';

const echo = process.argv.includes('--echo');
const results = [];
const check = (name, ok, detail = '') => {
  results.push({ name, ok: !!ok, detail });
  if (!ok || echo) console.error(`[unittest] ${ok ? 'ok  ' : 'FAIL'} ${name} ${detail}`);
};

const PIO0 = 0x50200000;
const SM0 = 0xc8; // CLKDIV, EXECCTRL +4, SHIFTCTRL +8, ADDR +c, INSTR +10, PINCTRL +14
const IO_BANK0 = 0x40014000;
const DMA = 0x50000000;

function board(opts = {}) {
  const sim = new Simulator();
  const mcu = sim.rp2040;
  mcu.logger = { debug() {}, info() {}, warn() {}, error() {} };
  const loop = installPioClock(sim, opts);
  mcu.core.waiting = true; // parked: WFI with no interrupt enabled
  return { sim, mcu, loop, w: (a, v) => mcu.writeUint32(a, v >>> 0), r: (a) => mcu.readUint32(a) };
}

function runUntil(b, ns) {
  return new Promise((resolve) => {
    const { loop, sim } = b;
    loop.opts.hookUs = 1;
    loop.opts.onHook = (t) => {
      if (t >= ns) {
        loop.stop();
        resolve();
      }
    };
    sim.execute();
  });
}

function loadProgram(b, prog, { pin, div, wrapTop, wrapBottom = 0, shiftctrl = null, setCount = 1 }) {
  const { w } = b;
  prog.forEach((op, i) => w(PIO0 + 0x48 + 4 * i, op));
  w(IO_BANK0 + 8 * pin + 4, 6); // GPIO ctrl: FUNCSEL = PIO0
  w(PIO0 + SM0 + 0x14, (setCount << 26) | (pin << 5) | pin); // PINCTRL: set/out base = pin
  w(PIO0 + SM0 + 0x04, (wrapTop << 12) | (wrapBottom << 7));
  if (shiftctrl !== null) w(PIO0 + SM0 + 0x08, shiftctrl);
  const int = Math.floor(div);
  const frac = Math.round((div - int) * 256);
  w(PIO0 + SM0, (int << 16) | (frac << 8));
  w(PIO0 + SM0 + 0x10, 0xe081); // exec: set pindirs, 1
  return int + frac / 256;
}

async function testToggle(fast) {
  const b = board({ fast });
  const pin = 5;
  const edges = [];
  b.mcu.gpio[pin].addListener((v) => {
    if (v === 0 || v === 1) edges.push([b.loop.now(), v]); // driven Low / High only
  });
  // 0: set pins, 1 [31]   1: set pins, 0 [31]
  const div = loadProgram(b, [0xff01, 0xff00], { pin, div: 2.3, wrapTop: 1 });
  b.w(PIO0, 1); // CTRL: enable SM0
  const t0 = b.sim.clock.nanos;
  await runUntil(b, 200_000);
  // instruction k starts at tick 32k: t = t0 + 8 * floor(32k * div)
  let bad = 0;
  const n = Math.min(edges.length, 400);
  for (let k = 0; k < n; k++) {
    const expect = t0 + 8 * Math.floor(32 * k * div);
    if (edges[k][0] !== expect) bad++;
  }
  const mean = (edges[n - 1][0] - edges[0][0]) / (n - 1);
  check(`PIO ${fast ? 'fast' : 'naive'}: ${n} edges on the floor(n x ${div}) grid`, n > 300 && bad === 0, `${bad} off, mean ${mean.toFixed(3)} ns (exact ${(32 * div * 8).toFixed(3)})`);
  return { edges: edges.slice(0, n).map((e) => e[0]), stats: { ...b.loop.stats } };
}

async function testStall() {
  const b = board();
  const pin = 6;
  const edges = [];
  b.mcu.gpio[pin].addListener((v) => {
    if (v === 0 || v === 1) edges.push([b.loop.now(), v]); // driven Low / High only
  });
  // 0: pull block   1: set pins, 1 [15]   2: set pins, 0
  const div = loadProgram(b, [0x80a0, 0xef01, 0xe000], { pin, div: 4, wrapTop: 2 });
  b.w(PIO0, 1);
  const tPut = 100_000;
  b.loop.alarmAt(tPut, () => b.w(PIO0 + 0x10, 0x1234)); // TXF0
  await runUntil(b, 99_000);
  const instrStalled = b.loop.stats.pioInstr;
  const before = edges.length;
  check('stall: blocking pull on an empty FIFO executes once, then costs nothing', instrStalled === 1 && edges.every((e) => e[1] === 0),
    `instr ${instrStalled}, stall skips ${b.loop.stats.pioStallSkips}`);
  await runUntil(b, 120_000);
  const rise = edges.find((e) => e[1] === 1);
  const tick = 8 * div;
  check('stall: resumes on the first tick after the FIFO write (pull completes, set runs next tick)',
    rise && rise[0] >= tPut + tick && rise[0] <= tPut + 2 * tick, rise ? `rise at +${rise[0] - tPut} ns (tick ${tick} ns)` : 'no edge');
  const fall = edges.slice(before).find((e) => e[1] === 0 && rise && e[0] > rise[0]);
  check('stall: delay [15] honoured', fall && rise && fall[0] - rise[0] === 16 * tick, fall ? `${fall[0] - rise[0]} ns` : '');
}

async function testDma() {
  const b = board();
  const { w, r, mcu } = b;
  const A = 0x20010000;
  const B = 0x20010010;
  const TABLE = 0x20010020; // 8-byte aligned
  w(TABLE, B);
  w(TABLE + 4, A);
  // PIO: 0: mov isr, x  1: push block  2: jmp x-- 0 [3]
  loadProgram(b, [0xa0c1, 0x8020, 0x0340], { pin: 7, div: 1, wrapTop: 2 });
  w(PIO0 + SM0 + 0x10, 0xe034); // exec: set x, 20
  const pushed = [];
  const sm = mcu.pio[0].machines[0];
  const origPush = sm.rxFIFO.push.bind(sm.rxFIFO);
  sm.rxFIFO.push = (v) => {
    pushed.push(v & 0xffff);
    origPush(v);
  };
  // control channel 1: read table (ring 8 bytes), write ch0 AL2_WRITE_ADDR_TRIG, 32-bit
  w(DMA + 0x40 + 0x00, TABLE);
  w(DMA + 0x40 + 0x04, DMA + 0x2c);
  w(DMA + 0x40 + 0x08, 1);
  w(DMA + 0x40 + 0x10, (1 << 21) | (0x3f << 15) | (1 << 11) | (3 << 6) | (1 << 4) | (2 << 2) | 1); // AL1_CTRL
  // data channel 0: read PIO0 RXF0, write A, 4 x 16-bit, DREQ 4, chain to 1
  w(DMA + 0x00, PIO0 + 0x20);
  w(DMA + 0x04, A);
  w(DMA + 0x08, 4);
  w(DMA + 0x404, 1); // INTE0: channel 0
  let irqs = 0;
  const origSet = mcu.setInterrupt.bind(mcu);
  mcu.setInterrupt = (irq, v) => {
    if (irq === 11 && v && !(mcu.core.pendingInterrupts & (1 << 11))) {
      irqs++;
      b.loop.alarmAt(b.sim.clock.nanos + 100, () => {
        w(DMA + 0x40c, 1); // INTS0: clear (what the ISR does)
      });
    }
    origSet(irq, v);
  };
  const ringAddrs = new Set();
  const ch1 = mcu.dma.channels[1];
  w(DMA + 0x0c, (4 << 15) | (1 << 11) | (1 << 5) | (1 << 2) | 1); // CTRL_TRIG: start
  w(PIO0, 1);
  // 1 instruction per tick at div 1: a push every 6 ticks = 48 ns; run 3 us
  const seen = [];
  b.loop.opts.hookUs = 0;
  await new Promise((resolve) => {
    b.loop.opts.hookUs = 0.1;
    b.loop.opts.onHook = (t) => {
      ringAddrs.add(ch1.readAddr);
      if (t > 3000) {
        b.loop.stop();
        resolve();
      }
    };
    b.sim.execute();
  });
  void seen;
  const nBlocks = irqs; // completed blocks (the next may be in flight)
  // half for block k: A, B, A, B ... (first target A, then the table: B, A, B, ...)
  const mem16 = (addr, i) => mcu.readUint16(addr + 2 * i);
  let bad = 0;
  const ch0 = mcu.dma.channels[0];
  const inFlight = ch0.ctrl & (1 << 24) ? 4 - ch0.transCount : 0; // values of block nBlocks written
  for (let k = Math.max(0, nBlocks - 2); k < nBlocks; k++) {
    const base = k % 2 ? B : A;
    for (let i = k === nBlocks - 2 ? inFlight : 0; i < 4; i++) if (mem16(base, i) !== pushed[4 * k + i]) bad++;
  }
  for (let i = 0; i < inFlight; i++) if (mem16(nBlocks % 2 ? B : A, i) !== pushed[4 * nBlocks + i]) bad++;
  check('DMA ping-pong: 16-bit DREQ-paced blocks alternate A, B via chain + AL2_WRITE_ADDR_TRIG',
    nBlocks >= 6 && bad === 0, `${nBlocks} blocks, ${bad} wrong; last A ${[0, 1, 2, 3].map((i) => mem16(A, i))} B ${[0, 1, 2, 3].map((i) => mem16(B, i))}`);
  check('DMA ring_size 3: control read address wraps inside the 8-byte table',
    [...ringAddrs].every((a) => a === TABLE || a === TABLE + 4) && ringAddrs.size === 2, [...ringAddrs].map((a) => a.toString(16)).join(' '));
  const full = Math.floor(pushed.length / 4);
  check('DMA IRQ: one per data block, none from the quiet control channel', irqs === full || irqs === full - 1, `${irqs} IRQs, ${pushed.length} values pushed`);
  check('DMA data channel WRITE_ADDR readable (driver\'s dma.write)', [A, B].some((x) => r(DMA + 0x04) >= x && r(DMA + 0x04) <= x + 8), r(DMA + 0x04).toString(16));
}

async function testJoin() {
  const b = board();
  // 0: mov isr, x  1: push block  2: jmp x-- 0  ; FJOIN_RX, no DMA: stalls when RX is full
  loadProgram(b, [0xa0c1, 0x8020, 0x0040], { pin: 8, div: 1, wrapTop: 2, shiftctrl: (1 << 31) | (0b11 << 18) });
  b.w(PIO0, 1);
  await runUntil(b, 5000);
  const sm = b.mcu.mcu ?? b.mcu.pio[0].machines[0];
  const flevel = b.r(PIO0 + 0x0c);
  check('FJOIN_RX: RX FIFO holds 8 before the push stalls', sm.rxFIFO.itemCount === 8 && sm.waiting && (flevel >> 4 & 0xf) === 8, `items ${sm.rxFIFO.itemCount}, FLEVEL ${flevel.toString(16)}`);
}

async function testPace() {
  const b = board({ pace: 1 });
  const w0 = performance.now();
  let ahead = 0;
  b.loop.opts.hookUs = 100;
  await new Promise((resolve) => {
    b.loop.opts.onHook = (t) => {
      const wallNs = (performance.now() - w0) * 1e6;
      if (t > wallNs + 1e6) ahead++;
      if (t >= 300e6) {
        b.loop.stop();
        resolve();
      }
    };
    b.sim.execute();
  });
  const wall = (performance.now() - w0) / 1000;
  check('pace 1: 0.3 s simulated takes >= 0.3 s wall, never > 1 ms ahead', wall >= 0.299 && ahead === 0, `${wall.toFixed(3)} s wall, ${ahead} hooks ahead`);
}

function testRing() {
  const real = (2109 * micropythonDivider(6759615) * 1e9) / 125e6; // 311 934.28 ns
  const run = (periodNs, mode) => {
    const ring = new SampleRing({ periodNs, capacity: 8192, mode });
    for (let k = 0; k < 6000; k++) ring.push(new Array(13).fill(k & 0xfff));
    const got = [];
    for (let inst = 0; inst < 5000; inst++) {
      const info = { instant: inst, instantStartNs: 1e6 + inst * real };
      for (let i = 0; i < 13; i++) {
        const v = ring.codeFor(i < 8 ? 0 : 1, i < 8 ? i : i - 8, info.instantStartNs + i * 24000, info);
        if (i === 0) got.push(v);
        else if (v !== got[got.length - 1]) return { bad: true };
      }
    }
    return { stats: ring.stats, last: got[got.length - 1] };
  };
  const nominal = run(312000, 'time');
  const exact = run(real, 'time');
  const count = run(312000, 'count');
  check('SampleRing time mode: one ring instant per ADC instant (13 channels alike)', !exact.bad && exact.stats.repeats === 0 && exact.last === (4999 & 0xfff), JSON.stringify(exact));
  check('SampleRing time mode at the nominal 312 us: the 311.934 us ADC repeats an instant (first after ~2370, then every ~4750)', !nominal.bad && nominal.stats.repeats === 1, JSON.stringify(nominal.stats));
  check('SampleRing count mode: never slips', !count.bad && count.stats.repeats === 0 && count.last === (4999 & 0xfff), JSON.stringify(count.stats));
}

testRing();
const fast = await testToggle(true);
const naive = await testToggle(false);
check('PIO fast and naive modes give identical edge times', JSON.stringify(fast.edges) === JSON.stringify(naive.edges),
  `fast ${fast.stats.pioInstr} instr; naive ${naive.stats.pioInstr} instr, ${naive.stats.pioTicksVisited} ticks visited`);
await testStall();
await testDma();
await testJoin();
await testPace();
const failed = results.filter((x) => !x.ok);
console.log(JSON.stringify({ ok: failed.length === 0, checks: results.length, failed }, null, 2));
process.exit(failed.length ? 1 : 0);
