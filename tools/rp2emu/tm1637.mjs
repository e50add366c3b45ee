// tm1637.mjs — a TM1637 4-digit LED display driver chip on two emulated RP2040 GPIOs.
//
// Two-wire protocol as in the TM1637 datasheet (V2.4, "Interface"): CLK and DIO both
// open-drain with pull-ups on the module. START = DIO falls while CLK is high; STOP = DIO
// rises while CLK is high; data bits are taken on CLK rising edges, LSB first; after the 8th
// bit the chip pulls DIO low from the 8th falling edge of CLK to the 9th falling edge (ACK).
// Commands: data command 0b01xx_xxxx (bit 1: 0 = write display registers; bit 2: 1 = fixed
// address; bit 3: test mode), address command 0b11xx_xaaa (C0H..C5H, followed by data bytes
// in the same transaction), display control 0b10xx_xbbb (bit 3 = on, bits 0-2 = pulse width
// 1/16 .. 14/16, i.e. "brightness" 0..7).
//
// Line model: DIO is low if the MCU drives it low (output enabled, value 0) or the chip pulls
// it (ACK); otherwise the module's pull-up holds it high. The model writes that level into
// the DIO pin's input (so `Pin.value()` on the MCU reads the real line). An MCU driving DIO
// *high* (push-pull) while the chip ACKs is counted as contention.
//
// API
// ---
//   import { attachTm1637, decodeSegments } from './tm1637.mjs';
//   const disp = attachTm1637(mcu, {
//     clk: 26, dio: 27,
//     now,                 // () => simulated ns; default clock.nanos
//     onChange,            // (state) => void after a transaction that changed what is shown:
//                          //   state = { segments: [4 bytes], text, brightness 0..7, on,
//                          //             timeNs, registers: [6 bytes] }
//     ack: true,           // false: the chip never ACKs (a missing display)
//     segmentTable,        // optional Uint8Array(96) for ASCII 0x20..0x7F; default: parsed
//                          //   from firmware/drivers/tm1637.py (SEGMENTS), embedded fallback
//   });
//   disp.state             // as onChange's
//   disp.segments          // Uint8Array(4), the first four display registers (C0H..C3H)
//   disp.text              // decoded text, one character per cell (+ "." for the point),
//                          //   e.g. " 12.4" for "12.4" right-aligned
//   disp.stats             // { transactions, bytes, acks, commands: {data, address, display},
//                          //   unknown, aborted (STOP mid-byte), contention, bitsOutside,
//                          //   minClkHighNs, minClkLowNs }
//   disp.detach()
//   decodeSegments(bytes, table?) -> text

import fs from 'fs';

// firmware/drivers/tm1637.py SEGMENTS (ASCII 0x20..0x7F), used if the file cannot be read.
const FALLBACK_TABLE =
  '008622766d527f20390f6346804080523f065b4f666d7d077f6f000058484c537b777c395e79713d76301e7538' +
  '37543f7367506d783e1c2a766e5b39640f2308025f7c585e7b716f74100e753037545c7367506d781c1c2a766e5b39300f0100';

let _table = null;

function loadTable() {
  if (_table) return _table;
  try {
    const url = new URL('../../firmware/drivers/tm1637.py', import.meta.url);
    const src = fs.readFileSync(url, 'utf8');
    const m = src.match(/SEGMENTS\s*=\s*\(([\s\S]*?)\)/);
    if (m) {
      const bytes = [];
      for (const lit of m[1].matchAll(/b"((?:\\x[0-9a-fA-F]{2})*)"/g)) {
        for (const h of lit[1].matchAll(/\\x([0-9a-fA-F]{2})/g)) bytes.push(parseInt(h[1], 16));
      }
      if (bytes.length === 96) {
        _table = Uint8Array.from(bytes);
        return _table;
      }
    }
  } catch {
    // fall through
  }
  _table = Uint8Array.from(FALLBACK_TABLE.match(/../g).map((h) => parseInt(h, 16)));
  return _table;
}

const _reverse = new Map();

function reverseTable(table) {
  let r = _reverse.get(table);
  if (r) return r;
  r = new Map();
  // preference: digits, blank, '-', upper case, lower case, the rest
  const order = [];
  for (let c = 0x30; c <= 0x39; c++) order.push(c);
  order.push(0x20, 0x2d);
  for (let c = 0x41; c <= 0x5a; c++) order.push(c);
  for (let c = 0x61; c <= 0x7a; c++) order.push(c);
  for (let c = 0x20; c < 0x80; c++) order.push(c);
  for (const c of order) {
    const seg = table[c - 0x20] & 0x7f;
    if (c === 0x2e || c === 0x2c) continue; // '.' and ',' are the decimal point
    if (!r.has(seg)) r.set(seg, String.fromCharCode(c));
  }
  _reverse.set(table, r);
  return r;
}

/** Text of segment bytes: one character per cell, "." appended for a lit decimal point. */
export function decodeSegments(bytes, table = loadTable()) {
  const r = reverseTable(table);
  let s = '';
  for (const b of bytes) {
    s += r.get(b & 0x7f) ?? '?';
    if (b & 0x80) s += '.';
  }
  return s;
}

export function attachTm1637(mcu, opts = {}) {
  return new Tm1637(mcu, opts);
}

class Tm1637 {
  constructor(mcu, opts) {
    this.o = { clk: 26, dio: 27, now: () => mcu.clock.nanos, onChange: null, ack: true, ...opts };
    this.table = this.o.segmentTable ? Uint8Array.from(this.o.segmentTable) : loadTable();
    this.mcu = mcu;
    this.now = this.o.now;
    this.pClk = mcu.gpio[this.o.clk];
    this.pDio = mcu.gpio[this.o.dio];
    this.registers = new Uint8Array(6);
    this.brightness = 0;
    this.on = false;
    this.fixedAddress = false;
    this.address = 0;
    this.stats = {
      transactions: 0,
      bytes: 0,
      acks: 0,
      commands: { data: 0, address: 0, display: 0 },
      unknown: 0,
      aborted: 0,
      contention: 0,
      bitsOutside: 0,
      minClkHighNs: Infinity,
      minClkLowNs: Infinity,
    };
    this.chipPull = false; // chip pulling DIO low (ACK)
    this.inTransaction = false;
    this.phase = 'data';
    this.bitCount = 0;
    this.byte = 0;
    this.byteIndex = 0;
    this.firstCmd = 0;
    this.clkEdgeNs = -Infinity;
    this.clk = this._clkLevel();
    this.dio = this._dioLevel();
    this._shown = this._snapshot(0);
    this.state = this._shown;
    this._unsub = [this.pClk.addListener(() => this._update()), this.pDio.addListener(() => this._update())];
    this.pDio.setInputValue(!!this.dio);
    this.pClk.setInputValue(!!this.clk);
  }

  detach() {
    for (const u of this._unsub) u();
  }

  get segments() {
    return this.registers.slice(0, 4);
  }

  get text() {
    return decodeSegments(this.segments, this.table);
  }

  _clkLevel() {
    const p = this.pClk;
    if (p.outputEnable) return p.outputValue ? 1 : 0;
    return 1; // module pull-up
  }

  _mcuDio() {
    const p = this.pDio;
    if (!p.outputEnable) return null; // released
    return p.outputValue ? 1 : 0;
  }

  _dioLevel() {
    const m = this._mcuDio();
    if (m === 0 || this.chipPull) {
      if (m === 1 && this.chipPull) this.stats.contention++;
      return 0;
    }
    return 1;
  }

  // Recompute both line levels and act on edges (called from both pins' listeners and when
  // the chip itself changes its pull).
  _update() {
    const clk = this._clkLevel();
    const dio = this._dioLevel();
    const t = this.now();
    if (dio !== this.dio) {
      this.dio = dio;
      this.pDio.setInputValue(!!dio);
      if (this.clk === 1 && clk === 1 && !this.chipPull) {
        if (dio === 0) this._start();
        else this._stop(t);
      }
    }
    if (clk !== this.clk) {
      const dt = t - this.clkEdgeNs;
      this.clkEdgeNs = t;
      this.clk = clk;
      this.pClk.setInputValue(!!clk);
      if (clk === 1) {
        if (dt < this.stats.minClkLowNs) this.stats.minClkLowNs = dt;
        this._rise();
      } else {
        if (dt < this.stats.minClkHighNs) this.stats.minClkHighNs = dt;
        this._fall();
      }
    }
  }

  _start() {
    if (this.inTransaction && (this.bitCount > 1 || this.phase !== 'data')) this.stats.aborted++;
    this.inTransaction = true;
    this.phase = 'data';
    this.bitCount = 0;
    this.byte = 0;
    this.byteIndex = 0;
  }

  _stop(t) {
    if (!this.inTransaction) return;
    // a STOP is CLK rising with DIO low, then DIO rising: that last clock is not a data bit
    if (this.bitCount > 1 || this.phase !== 'data') this.stats.aborted++;
    this.inTransaction = false;
    this.stats.transactions++;
    this._report(t);
  }

  _rise() {
    if (!this.inTransaction) {
      this.stats.bitsOutside++;
      return;
    }
    if (this.phase === 'data' && this.bitCount < 8) {
      if (this.dio) this.byte |= 1 << this.bitCount; // LSB first
      this.bitCount++;
    }
    // phase 'ack': the 9th clock; the MCU reads DIO while CLK is high
  }

  _fall() {
    if (!this.inTransaction) return;
    if (this.phase === 'data' && this.bitCount === 8) {
      // 8th falling edge: byte complete; ACK (DIO low) until the 9th falling edge
      this._byte(this.byte);
      this.phase = 'ack';
      if (this.o.ack) {
        this.stats.acks++;
        this.chipPull = true;
        this._update();
      }
    } else if (this.phase === 'ack') {
      this.phase = 'data';
      this.bitCount = 0;
      this.byte = 0;
      if (this.chipPull) {
        this.chipPull = false;
        this._update();
      }
    }
  }

  _byte(b) {
    this.stats.bytes++;
    const idx = this.byteIndex++;
    if (idx === 0) {
      this.firstCmd = b;
      const kind = b & 0xc0;
      if (kind === 0x40) {
        this.stats.commands.data++;
        this.fixedAddress = !!(b & 0x04);
        if (b & 0x02) this.stats.unknown++; // read key scan: not modelled
      } else if (kind === 0xc0) {
        this.stats.commands.address++;
        this.address = b & 0x07;
      } else if (kind === 0x80) {
        this.stats.commands.display++;
        this.on = !!(b & 0x08);
        this.brightness = b & 0x07;
      } else this.stats.unknown++;
      return;
    }
    if ((this.firstCmd & 0xc0) === 0xc0) {
      if (this.address < 6) this.registers[this.address] = b;
      if (!this.fixedAddress) this.address++;
    } else this.stats.unknown++;
  }

  _snapshot(t) {
    const segments = Array.from(this.registers.slice(0, 4));
    return {
      segments,
      text: decodeSegments(segments, this.table),
      brightness: this.brightness,
      on: this.on,
      timeNs: t,
      registers: Array.from(this.registers),
    };
  }

  _report(t) {
    const s = this._snapshot(t);
    const p = this._shown;
    const changed =
      s.on !== p.on || s.brightness !== p.brightness || s.segments.some((v, i) => v !== p.segments[i]);
    this.state = s;
    if (changed) {
      this._shown = s;
      if (this.o.onChange) this.o.onChange(s);
    }
  }
}
