// pio_clock.mjs — simulated-time run loop for rp2040js 1.4.1: CPU + PIO state machines at
// their clock-divided rates, one clock for both, optional real-time pacing, a periodic hook.
//
// Why: stock rp2040js runs PIO from its own setTimeout loop (RPPIO.run(): 1000 steps per
// event-loop turn), unrelated to simulated time; it ignores CLKDIV and delay cycles
// (`[n]` after an instruction), and keeps running while the core sleeps, so a PIO program's
// timing on the emulated chip has nothing to do with the real one. This module replaces
// `Simulator.execute()` with a loop that keeps the CPU exactly as the stock loop does
// (executeInstruction + clock.tick per instruction; WFI/WFE -> jump to the next alarm)
// and steps every enabled state machine at its own tick times
//     t(n) = t_enable + floor(n * (INT + FRAC/256)) / clk_sys      (INT 0 = 65536)
// honouring delay cycles and stalls, also while the core sleeps (then PIO is stepped up to
// the next alarm, and stops early when a PIO/DMA event schedules an alarm or raises an
// interrupt, so the core wakes at the simulated instant of the event).
//
// API
// ---
//   import { installPioClock } from './pio_clock.mjs';
//   const loop = installPioClock(sim, {
//     pace: false,        // true or a factor (1 = real time): never run simulated time ahead
//                         //   of wall time x factor (for a board on a real-time bus)
//     paceMaxLagMs: 50,   // with pace: when the simulation falls further behind wall time than
//                         //   this (CPU-heavy stretches run slower than real time), forget the
//                         //   excess instead of sprinting to catch up afterwards
//                         //   (stats.paceRebases / paceMaxLagMs); Infinity: catch up fully
//     paceQuantumUs: 500, // with pace: once within this of wall time, wait on a timer (the
//                         //   simulation trails wall time by <= ~1.5 ms, never leads)
//     hookUs: 0,          // > 0: call onHook every hookUs simulated microseconds
//     onHook: null,       // (simNowNs, loop) => void  (bridge I/O, watchdog, ...)
//     sliceNs: 1000,      // CPU run between PIO catch-ups (PIO lags the CPU by <= this)
//     turnMs: 8,          // wall ms per event-loop turn before yielding (setImmediate)
//     fast: true,         // false: naive reference mode (every SM visited at every PIO tick,
//                         //   stalls retried each tick, no gpio input cache) to measure
//                         //   the optimisations and cross-check timing
//     fixPadReset: true,  // pads reset with input enabled (0x56) as on the RP2040, not 0x36
//     fifoJoin: true,     // implement SHIFTCTRL FJOIN_RX/FJOIN_TX (8-deep FIFOs) and
//                         //   FIFO clearing on join change (rp2040js: always 4 deep, never cleared)
//   });
//   sim.execute();      // now runs `loop` (sim.execute / sim.stop are redirected), or loop.start()
//   loop.stop();
//   loop.now()          // simulated ns "now" as seen by a peripheral callback: the PIO's time
//                       //   while a state machine is being stepped, else clock.nanos. Device
//                       //   models take it as their `now` option.
//   loop.alarmAt(ns, fn)// one-shot callback at absolute simulated time ns (>= now)
//   loop.stats          // { cpuInstr, pioInstr, pioStallSkips, turns, wallMs, simNs, ... }
//   loop.speed()        // simulated seconds per wall second since start (or last resetStats())
//   loop.resetStats()
//
//   quietUsbCdc(cdc)    // see below: stops rp2040js's USB CDC host model from waking the
//                       //   core ~30 000 times per simulated second with empty OUT packets
//
// Also fixed here (rp2040js 1.4.1 gaps found with the board's drivers):
//   - pads reset with input disabled (0x36): a PIO `in pins` on a pin the firmware never
//     configures (the MCP3208 driver's DOUT, GP16) read 0 forever; now 0x56 as on silicon
//     (IE, pull-down, Schmitt; option fixPadReset)
//   - SHIFTCTRL FJOIN_RX / FJOIN_TX ignored (FIFOs always 4 deep) and FIFOs never cleared on a
//     join change (pio_sm_clear_fifos); now 8 / 0 deep and cleared (option fifoJoin)
//   - RPPIO.checkChangedPins / rp2040.gpioValues walk all 30 pins per PIO step (fast mode:
//     changed pins only, cached input mask)
// Checked and found working as the MCP3208 driver uses them (unittest.mjs, selftest.mjs):
// DMA 16-bit reads of a PIO RX FIFO with DREQ pacing, CHAIN_TO, ring_size 3 read wrap,
// AL2_WRITE_ADDR_TRIG re-trigger, IRQ_QUIET, per-block DMA_IRQ_0, WRITE_ADDR read-back.
//
// Not emulated (limits):
//   - while the CPU runs, PIO is caught up every sliceNs (1 us): a CPU access to PIO/DMA sees
//     the state machines up to 1 us late; while the CPU sleeps there is no such lag
//   - the 2-flop input synchroniser (2 PIO cycles of input delay; INPUT_SYNC_BYPASS ignored),
//     CLKDIV_RESTART / divider phase, SM-to-SM order within one sys-clock tick (by SM index)
//   - a wait released by the CPU or DMA resumes at the first PIO tick at or after the event
//   - DMA and bus timing: transfers are instantaneous (rp2040js: alarm at +0 ns), no bus
//     arbitration or wait states, so DMA starvation / late-DREQ FIFO overflows cannot happen
//   - flash erase/program stalling XIP (the cause of the driver's missed_irqs) is not modelled
//   - the core's cycle counts are rp2040js's (flash as zero-wait-state, no XIP cache misses),
//     so interpreter time on the emulated chip is approximate
//   - SIO GPIO_IN of a pin does not reflect the pin's own output (stock behaviour); the
//     device models write the line level into the inputs they share (DOUT, TM1637 DIO/CLK)

import { FIFO } from 'rp2040js';

const SM0_CLKDIV_OFF = 0x00; // offsets inside a state machine's register window
const SM0_SHIFTCTRL_OFF = 0x08;
const PIO_CTRL = 0x000;
const SM_WINDOW = [0x0c8, 0x0e0, 0x0f8, 0x110];
const FJOIN_TX = 1 << 30;
const FJOIN_RX = 1 << 31;
const PAD_RESET = 0x56; // RP2040 datasheet PADS_BANK0 GPIOx reset: IE, 4 mA, PDE, SCHMITT

export function installPioClock(sim, opts = {}) {
  return new SimLoop(sim, opts);
}

export class SimLoop {
  constructor(sim, opts = {}) {
    this.sim = sim;
    this.mcu = sim.rp2040;
    this.clock = sim.clock;
    this.opts = {
      pace: false,
      paceMaxLagMs: 50,
      paceQuantumUs: 500,
      hookUs: 0,
      onHook: null,
      sliceNs: 1000,
      turnMs: 8,
      fast: true,
      fixPadReset: true,
      fifoJoin: true,
      idleMaxNs: 1_000_000, // longest jump while asleep with no alarm / PIO
      ...opts,
    };
    this.fast = !!this.opts.fast;
    this.now = this.now.bind(this); // pass `loop.now` as a model's `now`
    this.stopped = true;
    this._timer = null;
    this._inPio = false;
    this.pioNow = 0;
    this._sms = [];
    this._active = [];
    this._nextHookNs = Infinity;
    this.resetStats();
    this._install();
  }

  // -- installation ----------------------------------------------------------------------

  _install() {
    const { mcu, sim } = this;
    const loop = this;
    for (const pio of mcu.pio) {
      pio.stop(); // cancels a stock run timer if one was started
      pio.run = () => {}; // the stock free-running loop is never started again
      pio.stopped = true;
      const origWrite = pio.writeUint32;
      pio.writeUint32 = function (offset, value) {
        origWrite.call(this, offset, value);
        if (offset === PIO_CTRL) loop._pioCtrlChanged(this);
      };
      pio.machines.forEach((sm, i) => {
        const st = {
          sm,
          pio,
          id: pio.index * 4 + i,
          enabled: false,
          base: 0,
          divQ8: 256,
          n: 0,
          dueNs: Infinity,
          stalled: false,
          resolvedNs: 0,
          pendingDelay: 0,
        };
        this._sms.push(st);
        const protoCheckWait = Object.getPrototypeOf(sm).checkWait;
        sm.checkWait = function () {
          const was = this.waiting;
          protoCheckWait.call(this);
          if (was && !this.waiting) st.resolvedNs = loop.now();
        };
        const origSmWrite = sm.writeUint32;
        sm.writeUint32 = function (offset, value) {
          const oldShift = this.shiftCtrl;
          origSmWrite.call(this, offset, value);
          if (offset === SM0_CLKDIV_OFF) loop._clkdivChanged(st);
          else if (offset === SM0_SHIFTCTRL_OFF && loop.opts.fifoJoin) {
            if ((oldShift ^ this.shiftCtrl) & (FJOIN_TX | FJOIN_RX)) loop._rejoin(st);
          }
        };
      });
    }
    // register writes of SM windows go through RPPIO.writeUint32 -> machines[i].writeUint32
    if (this.opts.fixPadReset) {
      for (const pin of mcu.gpio) {
        if (pin.padValue === 0b0110110) pin.padValue = PAD_RESET;
      }
    }
    if (this.fast) this._installInputCache();
    sim.execute = () => this.start();
    sim.stop = () => this.stop();
    mcu.onBreak = () => this.stop();
  }

  // GPIO input bitmask cache: rp2040js recomputes rp2040.gpioValues (30 getters) on every
  // PIO `in pins` / `mov x, pins` / SIO GPIO_IN read. Kept up to date bit by bit on
  // setInputValue, recomputed after IO_BANK0 / PADS writes (input override / enable).
  _installInputCache() {
    const { mcu } = this;
    let cache = 0;
    let valid = false;
    const invalidate = () => {
      valid = false;
    };
    const proto = Object.getPrototypeOf(mcu);
    const desc = Object.getOwnPropertyDescriptor(proto, 'gpioValues');
    Object.defineProperty(mcu, 'gpioValues', {
      configurable: true,
      get() {
        if (!valid) {
          cache = desc.get.call(this);
          valid = true;
        }
        return cache;
      },
    });
    mcu.gpio.forEach((pin, i) => {
      const orig = pin.setInputValue;
      const bit = 1 << i;
      pin.setInputValue = function (value) {
        orig.call(this, value);
        if (valid) cache = this.inputValue ? cache | bit : cache & ~bit;
      };
    });
    for (const key of [0x40014, 0x4001c]) {
      // IO_BANK0 (input override), PADS_BANK0 (input enable)
      const per = mcu.peripherals[key];
      const orig = per.writeUint32;
      per.writeUint32 = function (offset, value) {
        orig.call(this, offset, value);
        invalidate();
      };
    }
    this._invalidateInputs = invalidate;
    // RPPIO.checkChangedPins walks all 30 GPIOs whenever one changed: visit the changed ones
    // only (same ascending order)
    for (const pio of mcu.pio) {
      const gpio = mcu.gpio;
      pio.checkChangedPins = function () {
        let changed = (this.oldPinDirections ^ this.pinDirections) | (this.oldPinValues ^ this.pinValues);
        if (!changed) return;
        this.oldPinDirections = this.pinDirections;
        this.oldPinValues = this.pinValues;
        changed &= (1 << gpio.length) - 1;
        while (changed) {
          const low = changed & -changed;
          changed ^= low;
          gpio[31 - Math.clz32(low)].checkForUpdates();
        }
      };
    }
  }

  _pioCtrlChanged(pio) {
    const now = this.now();
    for (const st of this._sms) {
      if (st.pio !== pio) continue;
      const en = !!st.sm.enabled;
      if (en && !st.enabled) {
        st.enabled = true;
        st.divQ8 = divQ8(st.sm);
        st.base = now;
        st.n = 0;
        st.dueNs = now;
        st.stalled = !!st.sm.waiting;
        st.resolvedNs = now;
      } else if (!en && st.enabled) {
        st.enabled = false;
        st.dueNs = Infinity;
      }
    }
    this._active = this._sms.filter((s) => s.enabled);
  }

  _clkdivChanged(st) {
    const d = divQ8(st.sm);
    if (d === st.divQ8) return;
    if (st.enabled) {
      // keep the pending tick, continue at the new rate from there
      const t = Math.max(this._tickNs(st, st.n), this.now());
      st.base = t;
      st.n = 0;
      st.dueNs = t;
    }
    st.divQ8 = d;
  }

  _rejoin(st) {
    const { sm } = st;
    const sc = sm.shiftCtrl;
    const tx = sc & FJOIN_TX ? 8 : sc & FJOIN_RX ? 0 : 4;
    const rx = sc & FJOIN_RX ? 8 : sc & FJOIN_TX ? 0 : 4;
    sm.txFIFO = new FIFO(tx);
    sm.rxFIFO = new FIFO(rx);
    sm.updateDMATx();
    sm.updateDMARx();
    sm.pio.checkInterrupts();
    sm.checkWait();
  }

  // -- time ------------------------------------------------------------------------------

  now() {
    return this._inPio ? this.pioNow : this.clock.nanos;
  }

  alarmAt(ns, fn) {
    const a = this.clock.createAlarm(fn);
    a.schedule(Math.max(0, ns - this.clock.nanos));
    return a;
  }

  _sysNs() {
    return 1e9 / this.mcu.clkSys;
  }

  _tickNs(st, n) {
    return st.base + this._sysNs() * Math.floor((n * st.divQ8) / 256);
  }

  _tickAtOrAfter(st, t) {
    const sys = this._sysNs();
    let n = Math.ceil((((t - st.base) / sys) * 256) / st.divQ8);
    if (n < 0) n = 0;
    while (n > 0 && this._tickNs(st, n - 1) >= t) n--;
    while (this._tickNs(st, n) < t) n++;
    return n;
  }

  // -- statistics ------------------------------------------------------------------------

  resetStats() {
    this.stats = {
      cpuInstr: 0,
      pioInstr: 0,
      pioTicksVisited: 0,
      pioStallSkips: 0,
      pioEarlyStops: 0,
      idleNs: 0, // simulated time the core spent asleep (WFI/WFE)
      turns: 0,
      paceWaits: 0,
      paceRebases: 0,
      paceMaxLagMs: 0, // largest lag behind wall time seen (before a rebase)
      wallMs: 0,
      simNs: 0,
    };
    this._wall0 = performance.now();
    this._sim0 = this.clock.nanos;
  }

  speed() {
    const wall = (performance.now() - this._wall0) / 1000;
    const simS = (this.clock.nanos - this._sim0) / 1e9;
    return wall > 0 ? simS / wall : 0;
  }

  // -- run loop --------------------------------------------------------------------------

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this._paceWall0 = performance.now();
    this._paceSim0 = this.clock.nanos;
    if (this.opts.hookUs > 0 && this._nextHookNs === Infinity) {
      this._nextHookNs = this.clock.nanos + this.opts.hookUs * 1000;
    }
    this._schedule(0);
  }

  stop() {
    this.stopped = true;
    if (this._timer) {
      clearTimeout(this._timer);
      clearImmediate(this._timer);
      this._timer = null;
    }
  }

  get executing() {
    return !this.stopped;
  }

  _schedule(ms) {
    if (this._timer) return;
    if (ms > 0) {
      this._timer = setTimeout(() => {
        this._timer = null;
        this._turn();
      }, ms);
    } else {
      // setImmediate: lets pending I/O (pty, sockets, USB host side) run between turns
      this._timer = setImmediate(() => {
        this._timer = null;
        this._turn();
      });
    }
  }

  _turn() {
    if (this.stopped) return;
    const { clock, mcu, opts, stats } = this;
    const core = mcu.core;
    const t0 = performance.now();
    const wallEnd = t0 + opts.turnMs;
    const pace = opts.pace === true ? 1 : Number(opts.pace) || 0;
    const sim0 = clock.nanos;
    stats.turns++;
    let waitMs = 0;
    let spins = 0;
    while (!this.stopped) {
      const nowNs = clock.nanos;
      let limit = nowNs + (core.waiting ? opts.idleMaxNs : opts.sliceNs);
      if (this._nextHookNs < limit) limit = this._nextHookNs;
      if (pace) {
        const wallNow = performance.now();
        let allowed = this._paceSim0 + (wallNow - this._paceWall0) * 1e6 * pace;
        const lagMs = (allowed - nowNs) / 1e6 / pace;
        if (lagMs > stats.paceMaxLagMs) stats.paceMaxLagMs = lagMs;
        if (lagMs > opts.paceMaxLagMs) {
          this._paceSim0 = nowNs;
          this._paceWall0 = wallNow;
          allowed = nowNs;
          stats.paceRebases++;
        }
        // caught up (within a quantum): sleep on a timer instead of spinning on the wall clock
        if (nowNs >= allowed - opts.paceQuantumUs * 1000 * pace && !(lagMs > opts.paceMaxLagMs)) {
          waitMs = Math.max(1, Math.min(20, (nowNs - allowed) / 1e6 / pace + opts.paceQuantumUs / 1000));
          stats.paceWaits++;
          break;
        }
        if (allowed < limit) limit = allowed;
      }
      if (!core.waiting) {
        this._runCpu(limit);
        if (this._active.length) this._advancePio(clock.nanos, false);
      } else {
        const na = clock.nextAlarm;
        let target = limit;
        if (na && na.nanos < target) target = na.nanos;
        if (target < nowNs) target = nowNs;
        let reached = target;
        if (this._active.length) reached = this._advancePio(target, true);
        clock.tick(reached - clock.nanos);
        stats.idleNs += clock.nanos - nowNs;
      }
      if (clock.nanos >= this._nextHookNs) {
        const h = this._nextHookNs;
        this._nextHookNs = h + opts.hookUs * 1000;
        if (this._nextHookNs <= clock.nanos) this._nextHookNs = clock.nanos + opts.hookUs * 1000;
        if (opts.onHook) opts.onHook(h, this);
      }
      // Reading the clock is cheap here but not under libfaketime (a whole virtual PDU in
      // slow motion, tools/timescale.py), where each read costs microseconds: read it every
      // 64th slice (~64 us of simulated time).
      if ((++spins & 63) === 0 && performance.now() >= wallEnd) break;
    }
    stats.wallMs += performance.now() - t0;
    stats.simNs += clock.nanos - sim0;
    if (!this.stopped) this._schedule(waitMs);
  }

  _runCpu(limit) {
    const { clock } = this;
    const core = this.mcu.core;
    const cycleNanos = this._sysNs();
    let n = 0;
    // identical to Simulator.execute()'s busy branch: one instruction, then clock.tick
    while (clock.nanos < limit && !core.waiting && !this.stopped) {
      const cycles = core.executeInstruction();
      clock.tick(cycles * cycleNanos);
      n++;
    }
    this.stats.cpuInstr += n;
  }

  // Step state machines in global time order up to `target` ns. `idle`: the core sleeps and
  // the clock is behind the PIO; stop as soon as an alarm falls due or the core wakes, bring
  // the clock to that instant and return it. Returns the simulated time reached.
  _advancePio(target, idle) {
    if (!this.fast) return this._advancePioNaive(target, idle);
    const { clock, stats } = this;
    const core = this.mcu.core;
    const act = this._active;
    this._inPio = true;
    let reached = target;
    try {
      for (;;) {
        let best = null;
        let bestNs = Infinity;
        for (let i = 0; i < act.length; i++) {
          const st = act[i];
          if (st.stalled) {
            if (st.sm.waiting) {
              stats.pioStallSkips++;
              continue;
            }
            this._unstall(st);
          }
          if (st.dueNs < bestNs) {
            bestNs = st.dueNs;
            best = st;
          }
        }
        if (best === null || bestNs > target) break;
        this.pioNow = bestNs;
        this._step(best);
        // an event: a DMA DREQ (alarm at +0), a timer, an interrupt that wakes the core
        const na = clock.nextAlarm;
        if (na !== null && na.nanos <= (bestNs > clock.nanos ? bestNs : clock.nanos)) {
          stats.pioEarlyStops++;
          if (bestNs > clock.nanos) clock.tick(bestNs - clock.nanos);
          else clock.tick(0);
          if (idle && !core.waiting) {
            reached = bestNs;
            break;
          }
        } else if (idle && !core.waiting) {
          if (bestNs > clock.nanos) clock.tick(bestNs - clock.nanos);
          reached = bestNs;
          break;
        }
      }
    } finally {
      this._inPio = false;
    }
    if (reached < clock.nanos) reached = clock.nanos;
    return reached;
  }

  _unstall(st) {
    const nres = Math.max(st.n, this._tickAtOrAfter(st, st.resolvedNs));
    const delay = st.sm.waitDelay > 0 ? st.sm.waitDelay : 0;
    st.n = nres + 1 + delay;
    st.dueNs = this._tickNs(st, st.n);
    st.stalled = false;
  }

  _step(st) {
    const sm = st.sm;
    const c0 = sm.cycles;
    sm.updatePC = true;
    sm.executeInstruction(sm.pio.instructions[sm.pc]);
    if (sm.updatePC) sm.nextPC();
    this.stats.pioInstr++;
    if (sm.waiting) {
      st.stalled = true;
      st.n += 1;
    } else {
      st.n += sm.cycles - c0; // 1 + delay (+ a wait that resolved at once)
    }
    st.dueNs = this._tickNs(st, st.n);
    sm.pio.checkChangedPins();
  }

  // Reference mode: every enabled SM is visited at every one of its PIO ticks; delay cycles
  // are counted down tick by tick, a stalled SM retries its wait every tick.
  _advancePioNaive(target, idle) {
    const { clock, stats } = this;
    const core = this.mcu.core;
    const act = this._active;
    this._inPio = true;
    let reached = target;
    try {
      for (;;) {
        let best = null;
        let bestNs = Infinity;
        for (let i = 0; i < act.length; i++) {
          const st = act[i];
          if (st.stalled && !st.sm.waiting) {
            // released by an external event since our last visit
            st.stalled = false;
            st.pendingDelay = st.sm.waitDelay > 0 ? st.sm.waitDelay : 0;
            const n = Math.max(st.n, this._tickAtOrAfter(st, st.resolvedNs));
            st.n = n + 1;
            st.dueNs = this._tickNs(st, st.n);
          }
          if (st.dueNs < bestNs) {
            bestNs = st.dueNs;
            best = st;
          }
        }
        if (best === null || bestNs > target) break;
        this.pioNow = bestNs;
        stats.pioTicksVisited++;
        const st = best;
        const sm = st.sm;
        if (st.pendingDelay > 0) {
          st.pendingDelay--;
        } else if (sm.waiting) {
          const c0 = sm.cycles;
          sm.checkWait();
          if (!sm.waiting) {
            st.stalled = false;
            st.pendingDelay = sm.cycles - c0; // waitDelay
          } else stats.pioStallSkips++;
          sm.pio.checkChangedPins();
        } else {
          const c0 = sm.cycles;
          sm.updatePC = true;
          sm.executeInstruction(sm.pio.instructions[sm.pc]);
          if (sm.updatePC) sm.nextPC();
          stats.pioInstr++;
          if (sm.waiting) st.stalled = true;
          else st.pendingDelay = sm.cycles - c0 - 1;
          sm.pio.checkChangedPins();
        }
        st.n += 1;
        st.dueNs = this._tickNs(st, st.n);
        const na = clock.nextAlarm;
        if (na !== null && na.nanos <= (bestNs > clock.nanos ? bestNs : clock.nanos)) {
          if (bestNs > clock.nanos) clock.tick(bestNs - clock.nanos);
          else clock.tick(0);
          if (idle && !core.waiting) {
            reached = bestNs;
            break;
          }
        } else if (idle && !core.waiting) {
          if (bestNs > clock.nanos) clock.tick(bestNs - clock.nanos);
          reached = bestNs;
          break;
        }
      }
    } finally {
      this._inPio = false;
    }
    if (reached < clock.nanos) reached = clock.nanos;
    return reached;
  }
}

function divQ8(sm) {
  const int = sm.clockDivInt === 0 ? 65536 : sm.clockDivInt;
  return int * 256 + sm.clockDivFrac;
}

// rp2040js's USBCDC host model completes every OUT buffer the device arms right away (10 us
// later), with zero bytes when it has nothing to send: MicroPython re-arms it at once, so
// an idle board takes ~30 000 USB interrupts per simulated second and its core never sleeps
// (measured: ~64 M instructions per simulated second inside time.sleep_ms()). A real host
// NAKs an OUT endpoint it has no data for. quietUsbCdc(cdc) holds an armed OUT buffer until
// the host side has a byte to send (cdc.sendSerialByte), so WFE really waits.
// Call it right after `new USBCDC(mcu.usbCtrl)`.
export function quietUsbCdc(cdc) {
  const usb = cdc.usb;
  const orig = usb.onEndpointRead;
  let pending = null;
  usb.onEndpointRead = (endpoint, size) => {
    if (endpoint === cdc.outEndpoint && cdc.txFIFO.itemCount === 0) {
      pending = [endpoint, size];
      return;
    }
    orig(endpoint, size);
  };
  const send = cdc.sendSerialByte.bind(cdc);
  cdc.sendSerialByte = (b) => {
    send(b);
    if (pending) {
      const [e, n] = pending;
      pending = null;
      orig(e, n);
    }
  };
  return cdc;
}
