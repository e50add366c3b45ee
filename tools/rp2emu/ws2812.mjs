// ws2812.mjs — a chain of WS2812 LEDs on one emulated RP2040 GPIO (rp2040js).
//
// Decodes the data pin's pulse train by simulated time, as the LEDs do: each bit starts on a
// rising edge, its value is the high time (T0H short, T1H long), 24 bits per LED in G R B
// order MSB first, the first 24 bits go to LED 1, and a low time longer than the reset time
// (> 50 us) latches the frame. Bits of a frame beyond the chain length are passed on to
// nothing (counted); a frame shorter than the chain updates only the first LEDs (the others
// keep their colour, as in a real chain).
//
// API
// ---
//   import { attachWs2812 } from './ws2812.mjs';
//   const leds = attachWs2812(mcu, {
//     pin: 22, count: 12,
//     now,               // () => simulated ns (loop.now from pio_clock.mjs); default clock.nanos
//     onFrame,           // (frame) => void, frame = { colors: [[r, g, b] x count],
//                        //   startNs (first rising edge), endNs (last falling edge),
//                        //   latchNs (endNs + resetNs: when the LEDs show it), bits,
//                        //   ledsUpdated, malformed (bad bits in this frame) }
//     t0hMaxNs: 550,     // high time <= this: 0   (WS2812B T0H 0.40 us +- 0.15)
//     t1hMinNs: 650,     // high time >= this: 1   (WS2812B T1H 0.80 us +- 0.15), <= t1hMaxNs
//     t1hMaxNs: 5000,
//     glitchNs: 100,     // shorter high pulses are glitches (malformed, not a bit)
//     resetNs: 50000,    // low time that latches (WS2812B: > 50 us)
//     periodMaxNs: 5000, // a low time between bits longer than this (but < reset) is
//                        //   malformed timing (the LEDs would likely reset); still decoded
//   });
//   leds.colors          // current latched colours [[r, g, b] ...]
//   leds.frames          // frames latched so far
//   leds.stats           // { frames, bits, malformedBits, glitches, ambiguous, tooLong,
//                        //   longLow, partialLed, extraBits, minHighNs, maxHighNs,
//                        //   minPeriodNs, maxPeriodNs }
//   leds.detach()
//
// The latch is a clock alarm at endNs + resetNs, so a frame is reported after the reset time
// even if the line then stays low forever (it needs the simulated clock to run past it).

export function attachWs2812(mcu, opts = {}) {
  return new Ws2812Chain(mcu, opts);
}

class Ws2812Chain {
  constructor(mcu, opts) {
    this.o = {
      pin: 22,
      count: 12,
      now: () => mcu.clock.nanos,
      onFrame: null,
      t0hMaxNs: 550,
      t1hMinNs: 650,
      t1hMaxNs: 5000,
      glitchNs: 100,
      resetNs: 50000,
      periodMaxNs: 5000,
      ...opts,
    };
    this.mcu = mcu;
    this.now = this.o.now;
    this.colors = Array.from({ length: this.o.count }, () => [0, 0, 0]);
    this.frames = 0;
    this.stats = {
      frames: 0,
      bits: 0,
      malformedBits: 0,
      glitches: 0,
      ambiguous: 0,
      tooLong: 0,
      longLow: 0,
      partialLed: 0,
      extraBits: 0,
      minHighNs: Infinity,
      maxHighNs: 0,
      minPeriodNs: Infinity,
      maxPeriodNs: 0,
    };
    this.pin = mcu.gpio[this.o.pin];
    this.level = this._level();
    this.riseNs = -Infinity;
    this.lastRiseNs = -Infinity;
    this.fallNs = -Infinity;
    this._resetFrame();
    this.alarm = mcu.clock.createAlarm(() => this._latch());
    this._unsub = this.pin.addListener(() => this._onPin());
  }

  detach() {
    this._unsub();
    this.alarm.cancel();
  }

  _level() {
    const p = this.pin;
    if (p.outputEnable) return p.outputValue ? 1 : 0;
    return p.pullupEnabled && !p.pulldownEnabled ? 1 : 0;
  }

  _resetFrame() {
    this.bits = 0;
    this.word = 0;
    this.words = [];
    this.frameMalformed = 0;
    this.startNs = null;
  }

  _onPin() {
    const v = this._level();
    if (v === this.level) return;
    this.level = v;
    const t = this.now();
    if (v) {
      if (this.startNs === null) this.startNs = t;
      else {
        const low = t - this.fallNs;
        if (low > this.o.periodMaxNs) this.stats.longLow++;
        const period = t - this.lastRiseNs;
        if (period < this.stats.minPeriodNs) this.stats.minPeriodNs = period;
        if (period > this.stats.maxPeriodNs) this.stats.maxPeriodNs = period;
      }
      this.riseNs = t;
      this.lastRiseNs = t;
      this.alarm.cancel();
    } else {
      const high = t - this.riseNs;
      this.fallNs = t;
      this._bit(high);
      // latch after the reset time unless another bit starts first
      this.alarm.schedule(Math.max(0, t + this.o.resetNs - this.mcu.clock.nanos));
    }
  }

  _bit(high) {
    const o = this.o;
    const s = this.stats;
    if (high < o.glitchNs) {
      s.glitches++;
      s.malformedBits++;
      this.frameMalformed++;
      return;
    }
    if (high < s.minHighNs) s.minHighNs = high;
    if (high > s.maxHighNs) s.maxHighNs = high;
    let bit;
    if (high <= o.t0hMaxNs) bit = 0;
    else if (high >= o.t1hMinNs && high <= o.t1hMaxNs) bit = 1;
    else {
      if (high > o.t1hMaxNs) s.tooLong++;
      else s.ambiguous++;
      s.malformedBits++;
      this.frameMalformed++;
      bit = high > o.t1hMaxNs ? 1 : high >= (o.t0hMaxNs + o.t1hMinNs) / 2 ? 1 : 0;
    }
    s.bits++;
    this.word = (this.word << 1) | bit;
    this.bits++;
    if (this.bits % 24 === 0) {
      this.words.push(this.word & 0xffffff);
      this.word = 0;
    }
  }

  _latch() {
    if (this.bits === 0) return;
    const o = this.o;
    if (this.bits % 24) this.stats.partialLed++;
    const n = Math.min(this.words.length, o.count);
    if (this.words.length > o.count) this.stats.extraBits += (this.words.length - o.count) * 24;
    for (let i = 0; i < n; i++) {
      const w = this.words[i];
      this.colors[i] = [(w >> 8) & 0xff, (w >> 16) & 0xff, w & 0xff]; // GRB on the wire
    }
    this.frames++;
    this.stats.frames++;
    const frame = {
      colors: this.colors.map((c) => c.slice()),
      startNs: this.startNs,
      endNs: this.fallNs,
      latchNs: this.fallNs + o.resetNs,
      bits: this.bits,
      ledsUpdated: n,
      malformed: this.frameMalformed,
    };
    this._resetFrame();
    if (o.onFrame) o.onFrame(frame);
  }
}
