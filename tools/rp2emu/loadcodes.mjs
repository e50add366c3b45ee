// ADC codes for the emulated MCP3208s, by simulated time, from the load generator.
//
// The generator (loadgen.py on the MicroPython unix port: firmware/loadsim.py, the sim
// board's own load model) makes sample instants of 13 codes (CT1..CT12, VREF) SAMPLE_NS
// apart. The PIO program converts the 13 channels of one instant one after the other,
// 1/13 of the period apart, so a conversion at simulated time t belongs to instant
//     k = floor((t - anchor + SAMPLE_NS / 26) / SAMPLE_NS)
// where `anchor` is the time of the first conversion since the stream (re)started.
// Channel map (boards/pico_mcp3208.py): ADC A CH0..7 = CT1..CT8, ADC B CH0..3 = CT9..CT12,
// ADC B CH4 = VREF; ADC B CH5..7 are spare inputs tied to mid-rail.
//
// Without a generator: CTs at mid-rail, VREF a 50 Hz sine of 1500 counts (a board with no
// load), so the chip can boot and run with no side process.

export const SAMPLE_NS = 312_000; // firmware.rms.SAMPLE_US
const STRIDE = 13;
const MID = 2048;
const CHUNK = 1024; // instants per request
const KEEP = 16384; // instants kept behind the newest (a few seconds)

export class LoadCodes {
  constructor(child) {
    this.child = child;
    this.codes = new Uint16Array(KEEP * STRIDE);
    this.base = 0; // first instant held
    this.count = 0; // instants held
    this.requested = 0; // instants asked for (held + in flight)
    this.anchor = null; // sample time of instant anchorK
    this.anchorK = 0;
    this.instantBase = 0;
    this.lastK = -1;
    this.pending = Buffer.alloc(0);
    this.waiters = [];
    this.stats = { instants: 0, conversions: 0, spare: 0, late: 0, starved: 0 };
    if (child) {
      child.stdout.on('data', (chunk) => this.onData(chunk));
    }
  }

  /** Instant index of a conversion at simulated `ns` (anchors on the first). */
  instantAt(ns) {
    if (this.anchor === null) {
      this.anchor = ns;
      this.anchorK = this.lastK + 1;
    }
    const k = this.anchorK + Math.floor((ns - this.anchor + SAMPLE_NS / 26) / SAMPLE_NS);
    if (k > this.lastK) this.lastK = k;
    return k;
  }

  /** Instant index from the ADC model's own instant counter. */
  instantFrom(info) {
    if (this.anchor === null) {
      this.anchor = info.instantStartNs;
      this.anchorK = this.lastK + 1;
      this.instantBase = info.instant;
    }
    const k = this.anchorK + info.instant - this.instantBase;
    if (k > this.lastK) this.lastK = k;
    return k;
  }

  /** The conversion stream restarted (a chip reset): the codes go on where they were. */
  restart() {
    this.anchor = null;
  }

  timeOf(k) {
    return this.anchor + (k - this.anchorK) * SAMPLE_NS;
  }

  covers(ns) {
    if (!this.child) return true;
    if (this.anchor === null) return this.count > 0; // the first conversion anchors on held codes
    return this.timeOf(this.base + this.count - 1) > ns;
  }

  request(ns) {
    if (!this.child) return;
    const want =
      this.anchor === null ? this.lastK + 1 + CHUNK : this.anchorK + Math.ceil((ns - this.anchor) / SAMPLE_NS) + 1;
    // Bounded by what the ADC has consumed (lastK), not by what is held: held codes behind
    // the conversions are overwritten as new ones arrive.
    while (this.requested < want && this.requested - Math.max(this.lastK, 0) < KEEP - CHUNK) {
      this.child.stdin.write(`F ${CHUNK}\n`);
      this.requested += CHUNK;
    }
  }

  whenCovered(ns, fn) {
    this.request(ns);
    if (this.covers(ns)) fn();
    else this.waiters.push([ns, fn]);
  }

  onData(chunk) {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const bytesPerInstant = 2 * STRIDE;
    const n = Math.floor(this.pending.length / bytesPerInstant);
    for (let i = 0; i < n; i++) {
      const k = this.base + this.count;
      const at = (k % KEEP) * STRIDE;
      for (let c = 0; c < STRIDE; c++) this.codes[at + c] = this.pending.readUInt16LE(i * bytesPerInstant + 2 * c);
      if (this.count < KEEP) this.count++;
      else this.base++;
    }
    this.stats.instants += n;
    this.pending = this.pending.subarray(n * bytesPerInstant);
    const ready = this.waiters.filter(([ns]) => this.covers(ns));
    this.waiters = this.waiters.filter(([ns]) => !this.covers(ns));
    for (const [, fn] of ready) fn();
  }

  setLoad(load) {
    if (!this.child) throw new Error('no load generator (start the board with --loadgen)');
    if (typeof load !== 'object' || load === null) throw new Error('load must be an object');
    this.child.stdin.write(`L ${JSON.stringify(load)}\n`);
  }

  codeFor(adc, channel, ns, info) {
    this.stats.conversions++;
    const index = adc === 0 ? channel : channel < 5 ? 8 + channel : -1;
    if (index < 0) {
      this.stats.spare++;
      return MID;
    }
    // The ADC model counts sample instants itself (a new one at each ADC A CH0 conversion).
    const k = info ? this.instantFrom(info) : this.instantAt(ns);
    if (!this.child) {
      if (index !== 12) return MID;
      return Math.round(MID + 1500 * Math.sin((2 * Math.PI * 50 * k * SAMPLE_NS) / 1e9));
    }
    if (k < this.base) {
      this.stats.late++;
      return this.codes[(this.base % KEEP) * STRIDE + index];
    }
    if (k >= this.base + this.count) {
      // Only if the run loop did not wait for the generator (it does): counted, never silent.
      this.stats.starved++;
      return MID;
    }
    return this.codes[(k % KEEP) * STRIDE + index];
  }

  close() {
    if (this.child) {
      this.child.stdin.end();
      this.child.kill();
    }
  }
}
