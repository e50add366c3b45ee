// mcp3208.mjs — two MCP3208 12-bit SPI ADCs on the emulated RP2040's GPIOs (rp2040js).
//
// The model speaks the datasheet's SPI protocol (MCP3204/3208, DS21298, "Serial
// communications", modes 0,0 and 1,1) from GPIO pin listeners, so whatever drives the pins
// (the firmware's PIO program, its bit-banged fallback, anything else) is answered as a real
// chip would answer it:
//   CS falls                   -> chip selected; DOUT stays Hi-Z
//   rising SCLK, DIN = 1       -> start bit (leading zeros before it are allowed)
//   next 4 rising edges        -> SGL/DIFF, D2, D1, D0 latched from DIN
//   the clock after D0         -> end of acquisition: the analog value is sampled on its
//                                 falling edge (edge 6 counting the start bit as 1)
//   that falling edge          -> DOUT drives the null bit (0)
//   next 12 falling edges      -> B11 .. B0 (MSB first), then B1 .. B11 (LSB first), then 0s
//   CS rises                   -> DOUT back to Hi-Z; a frame cut short is a "CS glitch"
// Both chips' DOUTs are joined on one GPIO: a chip drives it only while selected and past
// the null bit; with neither driving, the pin reads its pad pull (RP2040 reset: pull-down).
//
// API
// ---
//   import { attachMcp3208, sineCodes, SampleRing, logicalIndex, pioInstantNs,
//            micropythonDivider } from './mcp3208.mjs';
//   const adc = attachMcp3208(mcu, {
//     sclk: 18, din: 19, dout: 16, cs: [20, 21],   // GPIO numbers (the board's)
//     codeFor,            // (adc 0|1, channel 0..7, simTimeNs, info) => code 0..4095
//                         //   info = { instant, instantStartNs, seq, diff }:
//                         //   instant: counter of sample instants, incremented at every
//                         //   conversion of `firstOfInstant` (default ADC A CH0);
//                         //   instantStartNs: sample time of that conversion (same for all
//                         //   conversions of one instant); seq: conversions so far (both chips);
//                         //   diff: true if the command asked for a differential pair.
//                         //   Default: sineCodes() (mid-rail 50 Hz sines).
//     now,                // () => simulated ns (pass loop.now from pio_clock.mjs); default clock.nanos
//     present: [true, true],      // false: chip absent (never drives DOUT)
//     firstOfInstant: [0, 0],
//     logSize: 65536,     // conversions kept in adc.log (ring)
//     onConversion: null, // (entry) => void, entry = { adc, channel, code, tNs, instant, seq }
//     timing: { hiNs: 500, loNs: 500, csHighNs: 500, suCsNs: 100 },  // datasheet minima at
//                         //   2.7 V (fCLK 1 MHz); violations are counted, not enforced
//   });
//   adc.stats   -> { conversions: [a, b], errors, badCommand, diffCommand, csGlitch,
//                   bothSelected, leadingZeroClocks, extraClocks, dinChangedWhileHigh,
//                   contention, timing: { hi, lo, csHigh, suCs }, minHalfPeriodNs }
//   adc.log     -> { size, count, get(i) }   // i = 0 .. count-1, oldest available first is
//                   count - min(count, size); entries as onConversion's
//   adc.findInstant(values13) -> instant number whose 13 logged codes (logical order) equal
//                   values13, or -1
//   adc.instantCodes(instant) -> Array(13) of logical channel codes logged for that instant
//   adc.setPresent(k, bool)   // plug chip k in / out at run time
//   adc.detach()
//
// Logical channel order (firmware/drivers/mcp3208.py): ADC A CH0..7 = 0..7, ADC B CH0..4 = 8..12
// (logicalIndex(adc, ch)); ADC B CH5..7 are spares (index 13..15).
//
//   SampleRing: a ring of sample instants (arrays of 13 codes in logical order) for feeding
//   codes computed elsewhere (the load simulator): see the class comment below.
//   pioInstantNs(mcu, smId = 0, cycles = 2109): the real duration of one sample instant from
//   the state machine's divider register; micropythonDivider(freq): the divider MicroPython
//   programs for a StateMachine(freq=...).
//
// Not modelled: the analog front end (codes come from codeFor), conversion-time limits of the
// SAR (a too-fast or too-slow clock still returns the code; too-short half periods are
// counted in stats.timing), output delay t_DO (DOUT changes at the falling edge itself),
// power-up, VREF. Differential commands return codeFor(adc, channel of the + input, ...) with
// info.diff = true (and count as stats.diffCommand: the firmware only uses single-ended).

const HIGH = 1;

export function logicalIndex(adc, channel) {
  return adc === 0 ? channel : 8 + channel;
}

/** Default codes: mid-rail sines, one amplitude/phase per logical channel. */
export function sineCodes({ freqHz = 50, mid = 2048, amp = null, noise = 0 } = {}) {
  const amps = amp ?? Array.from({ length: 16 }, (_, i) => 300 + 100 * i);
  return (adc, channel, tNs, info) => {
    const i = logicalIndex(adc, channel);
    const ph = (2 * Math.PI * i) / 13;
    let v = mid + amps[i] * Math.sin(2 * Math.PI * freqHz * (tNs / 1e9) + ph);
    if (noise) v += noise * hashNoise(info ? info.instant : 0, i);
    return Math.max(0, Math.min(4095, Math.round(v)));
  };
}

/** Deterministic pseudo-random value in [-1, 1) from (instant, channel). */
export function hashNoise(a, b) {
  let h = (Math.imul(a | 0, 0x9e3779b1) ^ Math.imul((b | 0) + 0x7f4a7c15, 0x85ebca6b)) >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x7feb352d) >>> 0;
  h ^= h >>> 15;
  return (h >>> 0) / 2147483648 - 1;
}

/**
 * Ring buffer of 13-code sample instants for codeFor, indexed by simulated time.
 *
 *   const ring = new SampleRing({ periodNs: 312000, capacity: 8192 });
 *   ring.push([c0, ..., c12]);     // next instant, in logical order (CT1..CT12, VREF)
 *   attachMcp3208(mcu, { codeFor: ring.codeFor, now: loop.now });
 *
 * Instant k of the ring is the analog state at t0 + k * periodNs. A conversion is served from
 * instant k = round((info.instantStartNs - t0) / periodNs) (mode 'time', default: the 13
 * conversions of one PIO sample instant always read one ring instant; if the PIO's period
 * differs from periodNs, the ADC slips an instant now and then, as a real ADC would) or
 * k = info.instant - firstInstant (mode 'count': one ring instant per ADC instant, no slip).
 * t0 defaults to the first instant's start. ring.produced tells how far the producer is;
 * ring.wanted(simNs) tells which instant the ADC will want at a simulated time, so a
 * producer can stay `ahead` instants in front. A missing instant (not produced yet, or
 * overwritten) holds the last code served for that channel and counts in ring.stats.misses.
 * stats.repeats / stats.skips count ring instants the ADC read twice / never (mode 'time').
 *
 * Mind the real period: MicroPython sets the PIO divider to floor(125 MHz * 256 / freq), so
 * the board's 312 us (freq 6 759 615 Hz) becomes 18 + 125/256 and one instant lasts
 * 2109 x 18.48828 / 125 MHz = 311.934 us. With periodNs = 312000 the ADC reads one ring
 * instant twice every ~2360 instants (0.74 s); pass the real period (pioInstantNs()) to
 * get none, or mode 'count'.
 */
export class SampleRing {
  constructor({ periodNs = 312000, capacity = 8192, channels = 13, mode = 'time', fill = 2048, t0Ns = null } = {}) {
    this.periodNs = periodNs;
    this.capacity = capacity;
    this.channels = channels;
    this.mode = mode;
    this.t0Ns = t0Ns;
    this.firstInstant = null;
    this.buf = new Uint16Array(capacity * channels);
    this.produced = 0; // instants pushed
    this.last = new Uint16Array(16).fill(fill);
    this.stats = { hits: 0, misses: 0, late: 0, repeats: 0, skips: 0 };
    this._lastK = null;
    this.codeFor = (adc, channel, tNs, info) => this._code(adc, channel, tNs, info);
  }

  push(values) {
    const off = (this.produced % this.capacity) * this.channels;
    for (let c = 0; c < this.channels; c++) this.buf[off + c] = values[c];
    this.produced++;
  }

  /** Ring instant the ADC wants at simulated time simNs (for a producer's flow control). */
  wanted(simNs) {
    if (this.t0Ns === null) return 0;
    return Math.floor((simNs - this.t0Ns) / this.periodNs);
  }

  _index(tNs, info) {
    const start = info ? info.instantStartNs : tNs;
    if (this.mode === 'count') {
      if (this.firstInstant === null) this.firstInstant = info.instant;
      return info.instant - this.firstInstant;
    }
    if (this.t0Ns === null) this.t0Ns = start;
    return Math.round((start - this.t0Ns) / this.periodNs);
  }

  _code(adc, channel, tNs, info) {
    const i = logicalIndex(adc, channel);
    const k = this._index(tNs, info);
    if (i === 0) {
      // instants the ADC took twice / jumped over: its period differs from periodNs
      if (this._lastK !== null) {
        if (k === this._lastK) this.stats.repeats++;
        else if (k > this._lastK + 1) this.stats.skips += k - this._lastK - 1;
      }
      this._lastK = k;
    }
    if (i < this.channels && k >= 0 && k < this.produced && k >= this.produced - this.capacity) {
      const v = this.buf[(k % this.capacity) * this.channels + i];
      this.last[i] = v;
      this.stats.hits++;
      return v;
    }
    this.stats.misses++;
    if (k >= this.produced) this.stats.late++;
    return this.last[i];
  }
}

/** Duration (ns) of one PIO sample instant of `cycles` PIO cycles on state machine smId. */
export function pioInstantNs(mcu, smId = 0, cycles = 2109) {
  const sm = mcu.pio[smId >> 2].machines[smId & 3];
  const div = (sm.clockDivInt || 65536) + sm.clockDivFrac / 256;
  return (cycles * div * 1e9) / mcu.clkSys;
}

/** MicroPython's divider for `freq` Hz (rp2_pio.c: floor(clk_sys * 256 / freq)), as a number. */
export function micropythonDivider(freq, clkSys = 125_000_000) {
  return Math.floor((clkSys * 256) / freq) / 256;
}

export function attachMcp3208(mcu, opts = {}) {
  return new Mcp3208Pair(mcu, opts);
}

class Mcp3208Pair {
  constructor(mcu, opts) {
    const o = {
      sclk: 18,
      din: 19,
      dout: 16,
      cs: [20, 21],
      codeFor: sineCodes(),
      now: () => mcu.clock.nanos,
      present: [true, true],
      firstOfInstant: [0, 0],
      logSize: 65536,
      onConversion: null,
      ...opts,
    };
    o.timing = { hiNs: 500, loNs: 500, csHighNs: 500, suCsNs: 100, ...(opts.timing || {}) };
    this.o = o;
    this.mcu = mcu;
    this.now = o.now;
    this.codeFor = o.codeFor;
    this.stats = {
      conversions: [0, 0],
      errors: 0, // sum of the protocol errors below
      badCommand: 0, // start bit never came / frame ended inside the command
      diffCommand: 0, // SGL/DIFF = 0
      csGlitch: 0, // CS rose before B0 was shifted out
      bothSelected: 0,
      leadingZeroClocks: 0,
      extraClocks: 0, // rising edges after B0's (reads of the LSB-first echo / zeros)
      dinChangedWhileHigh: 0,
      contention: 0,
      timing: { hi: 0, lo: 0, csHigh: 0, suCs: 0 },
      minHalfPeriodNs: Infinity,
    };
    this.instant = -1;
    this.instantStartNs = 0;
    this.seq = 0;
    const size = o.logSize;
    this._log = {
      adc: new Uint8Array(size),
      ch: new Uint8Array(size),
      code: new Uint16Array(size),
      t: new Float64Array(size),
      inst: new Int32Array(size),
    };
    this.log = {
      size,
      count: 0,
      get: (i) => {
        const L = this._log;
        const j = i % size;
        return { adc: L.adc[j], channel: L.ch[j], code: L.code[j], tNs: L.t[j], instant: L.inst[j], seq: i };
      },
    };
    this._instants = new Map(); // instant -> first log index (recent ones)
    this.chips = [0, 1].map((k) => ({
      k,
      present: !!o.present[k],
      selected: false,
      state: 'idle', // idle | start | cmd | acq | out
      rising: 0, // rising edges since the start bit (start bit = 1)
      cmd: 0,
      code: 0,
      outIdx: -1, // bit index being driven: 0 = null bit, 1..12 = B11..B0, ...
      drive: null, // null = Hi-Z, else 0/1
      csFallNs: -Infinity,
      csRiseNs: -Infinity,
      firstRise: true,
    }));
    const g = mcu.gpio;
    this.pSclk = g[o.sclk];
    this.pDin = g[o.din];
    this.pDout = g[o.dout];
    this.pCs = o.cs.map((n) => g[n]);
    this.sclk = this._level(this.pSclk);
    this.din = this._level(this.pDin);
    this.cs = this.pCs.map((p) => this._level(p));
    this.lastEdgeNs = -Infinity;
    this._doutLevel = null;
    this._unsub = [
      this.pSclk.addListener(() => this._onSclk()),
      this.pDin.addListener(() => this._onDin()),
      this.pCs[0].addListener(() => this._onCs(0)),
      this.pCs[1].addListener(() => this._onCs(1)),
    ];
    this._updateDout();
  }

  detach() {
    for (const u of this._unsub) u();
    this._unsub = [];
  }

  /** Plug a chip in (true) or out (false) at run time. */
  setPresent(k, present) {
    const chip = this.chips[k];
    chip.present = !!present;
    if (!present) {
      chip.selected = false;
      chip.state = 'idle';
      chip.drive = null;
    }
    this._updateDout();
  }

  // Level seen by the chip on an RP2040 output: driven value, else the pad pull.
  _level(pin) {
    if (pin.outputEnable) return pin.outputValue ? 1 : 0;
    return pin.pullupEnabled && !pin.pulldownEnabled ? 1 : 0;
  }

  _err(key) {
    this.stats[key]++;
    this.stats.errors++;
  }

  _onCs(k) {
    const v = this._level(this.pCs[k]);
    if (v === this.cs[k]) return;
    this.cs[k] = v;
    const chip = this.chips[k];
    const t = this.now();
    if (v === 0) {
      if (t - chip.csRiseNs < this.o.timing.csHighNs) this.stats.timing.csHigh++;
      chip.csFallNs = t;
      if (this.cs[1 - k] === 0) this._err('bothSelected');
      if (!chip.present) return;
      chip.selected = true;
      chip.state = 'start';
      chip.rising = 0;
      chip.cmd = 0;
      chip.outIdx = -1;
      chip.drive = null;
      chip.firstRise = true;
    } else {
      chip.csRiseNs = t;
      if (!chip.present) return;
      if (chip.selected && (chip.state !== 'out' || chip.outIdx < 12)) {
        if (chip.state === 'start' || chip.state === 'cmd') this._err('badCommand');
        else this._err('csGlitch');
      }
      chip.selected = false;
      chip.state = 'idle';
      chip.drive = null;
    }
    this._updateDout();
  }

  _onDin() {
    const v = this._level(this.pDin);
    if (v === this.din) return;
    this.din = v;
    if (this.sclk === HIGH) {
      for (const chip of this.chips) {
        if (chip.selected && (chip.state === 'start' || chip.state === 'cmd')) {
          this.stats.dinChangedWhileHigh++;
        }
      }
    }
  }

  _onSclk() {
    const v = this._level(this.pSclk);
    if (v === this.sclk) return;
    this.sclk = v;
    const t = this.now();
    const half = t - this.lastEdgeNs;
    this.lastEdgeNs = t;
    let changed = false;
    for (const chip of this.chips) {
      if (!chip.selected) continue;
      if (v === HIGH) {
        if (chip.firstRise) {
          chip.firstRise = false;
          if (t - chip.csFallNs < this.o.timing.suCsNs) this.stats.timing.suCs++;
        } else {
          this._halfCheck(half, 'lo');
        }
        this._rise(chip, t);
      } else {
        if (chip.state !== 'start') this._halfCheck(half, 'hi');
        if (this._fall(chip, t)) changed = true;
      }
    }
    if (changed) this._updateDout();
  }

  _halfCheck(half, which) {
    if (half < this.stats.minHalfPeriodNs) this.stats.minHalfPeriodNs = half;
    if (half < this.o.timing[which === 'hi' ? 'hiNs' : 'loNs']) this.stats.timing[which]++;
  }

  _rise(chip, t) {
    switch (chip.state) {
      case 'start':
        if (this.din === HIGH) {
          chip.state = 'cmd';
          chip.rising = 1;
          chip.cmd = 0;
        } else this.stats.leadingZeroClocks++;
        break;
      case 'cmd':
        chip.rising++;
        chip.cmd = (chip.cmd << 1) | this.din; // SGL/DIFF, D2, D1, D0
        if (chip.rising === 5) chip.state = 'acq';
        break;
      case 'acq':
        chip.rising++; // rising edge 6: acquisition ends on its falling edge
        break;
      case 'out':
        chip.rising++;
        if (chip.rising > 19) this.stats.extraClocks++; // reads past B0
        break;
      default:
    }
  }

  // returns true if DOUT changes
  _fall(chip, t) {
    if (chip.state === 'acq' && chip.rising === 6) {
      this._convert(chip, t);
      chip.state = 'out';
      chip.outIdx = 0;
      chip.drive = 0; // null bit
      return true;
    }
    if (chip.state === 'out') {
      chip.outIdx++;
      const i = chip.outIdx;
      let bit;
      if (i <= 12) bit = (chip.code >> (12 - i)) & 1; // B11..B0
      else if (i <= 23) bit = (chip.code >> (i - 12)) & 1; // B1..B11, LSB first
      else bit = 0;
      if (bit !== chip.drive) {
        chip.drive = bit;
        return true;
      }
    }
    return false;
  }

  _convert(chip, t) {
    const sgl = (chip.cmd >> 3) & 1;
    const ch = chip.cmd & 7;
    const adc = chip.k;
    if (!sgl) this._err('diffCommand');
    const [fa, fc] = this.o.firstOfInstant;
    if (adc === fa && ch === fc) {
      this.instant++;
      this.instantStartNs = t;
    }
    const info = { instant: this.instant, instantStartNs: this.instantStartNs, seq: this.seq, diff: !sgl };
    let code = this.codeFor(adc, ch, t, info) | 0;
    if (code < 0) code = 0;
    if (code > 4095) code = 4095;
    chip.code = code;
    this.stats.conversions[adc]++;
    const L = this._log;
    const j = this.seq % this.log.size;
    L.adc[j] = adc;
    L.ch[j] = ch;
    L.code[j] = code;
    L.t[j] = t;
    L.inst[j] = this.instant;
    if (adc === fa && ch === fc) {
      this._instants.set(this.instant, this.seq);
      if (this._instants.size > this.log.size / 8) {
        const first = this._instants.keys().next().value;
        this._instants.delete(first);
      }
    }
    this.seq++;
    this.log.count = this.seq;
    if (this.o.onConversion) this.o.onConversion({ adc, channel: ch, code, tNs: t, instant: this.instant, seq: this.seq - 1 });
  }

  _updateDout() {
    let level = null;
    let drivers = 0;
    for (const chip of this.chips) {
      if (chip.selected && chip.drive !== null) {
        drivers++;
        level = level === null ? chip.drive : level & chip.drive;
      }
    }
    if (drivers > 1) this._err('contention');
    if (level === null) {
      const p = this.pDout;
      level = p.pullupEnabled && !p.pulldownEnabled ? 1 : 0; // pad pull (bus keeper: 0)
    }
    if (level !== this._doutLevel) {
      this._doutLevel = level;
      this.pDout.setInputValue(!!level);
    }
  }

  /** 13 logical-order codes logged for `instant` (undefined entries if not in the log). */
  instantCodes(instant) {
    const first = this._instants.get(instant);
    const out = new Array(13).fill(undefined);
    if (first === undefined) return out;
    const L = this._log;
    for (let s = first; s < this.seq && s < first + 64; s++) {
      const j = s % this.log.size;
      if (L.inst[j] !== instant) break;
      const idx = logicalIndex(L.adc[j], L.ch[j]);
      if (idx < 13 && out[idx] === undefined) out[idx] = L.code[j];
    }
    return out;
  }

  findInstant(values) {
    for (const inst of this._instants.keys()) {
      const c = this.instantCodes(inst);
      let ok = true;
      for (let i = 0; i < 13; i++) {
        if (c[i] !== values[i]) {
          ok = false;
          break;
        }
      }
      if (ok) return inst;
    }
    return -1;
  }
}
