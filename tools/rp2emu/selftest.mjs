#!/usr/bin/env node
// selftest.mjs — the emulator's peripheral models against the REAL firmware drivers.
//
// Boots the frozen MicroPython image (protocol/, firmware/, boards/ frozen in) on rp2040js
// with pio_clock.mjs's run loop, attaches the MCP3208 pair, the WS2812 chain and the TM1637
// model, and runs a script through the REPL (paste mode, one line per prompt) that builds the
// drivers one by one as boards/pico_mcp3208.py does (no UART, no build()):
//   - Mcp3208Stream (PIO0 SM0 + 2 chained DMA channels + hard IRQ) streams >= 50 blocks
//     consumed with `await block()` while the LEDs and the display are written; every block
//     is compared value by value (per-channel weighted sums + the first instant + one whole
//     block raw) with the codes the model served; blocks/s measured on the chip's ticks_us
//     and instants/s from the model's log; overruns / missed_irqs reported
//   - read_raw() (bit-banged over SIO) against the model
//   - ADC B unplugged: what the stream reads then (0: GP16 keeps its reset pull-down, the
//     driver never configures the pad), and with the pad's pull-up enabled (> 4095)
//   - Ws2812 frames (PIO1 SM4) decoded from GP22 vs the words the driver sent and vs colours
//     computed here
//   - Display.show("12.4") etc. decoded from GP26/27 (with ACKs) vs expected text/segments
//   - emulator speed (simulated s per wall s) in phases: ADC streaming + idle CPU, ADC + busy
//     CPU, no PIO + idle CPU, no PIO + busy CPU
//
// usage: node selftest.mjs [--image=UF2] [--naive] [--pace[=factor]] [--timeout=S]
//                          [--json=OUT.json] [--echo] [--blocks=N]
// exit 0 if every check passed, 1 if one failed, 3 on timeout. Prints a JSON summary last.

import fs from 'fs';
import { fileURLToPath } from 'url';
import { decodeBlock } from 'uf2';
import { Simulator, USBCDC, ConsoleLogger, LogLevel } from 'rp2040js';
import { installPioClock, quietUsbCdc } from './pio_clock.mjs';
import { attachMcp3208, sineCodes, hashNoise, SampleRing, micropythonDivider } from './mcp3208.mjs';
import { attachWs2812 } from './ws2812.mjs';
import { attachTm1637 } from './tm1637.mjs';

const argv = process.argv.slice(2);
const opt = Object.fromEntries(
  argv.filter((a) => a.startsWith('--')).map((a) => {
    const [k, v] = a.slice(2).split('=');
    return [k, v === undefined ? true : v];
  }),
);
const here = (p) => fileURLToPath(new URL(p, import.meta.url));
const image = opt.image || here('../../build/rp2/out/firmware-frozen.uf2');
const timeoutS = Number(opt.timeout ?? 600);
const NB = Number(opt.blocks ?? 56);

async function loadBootrom() {
  const candidates = [
    process.env.RP2EMU_BOOTROM,
    './bootrom.mjs',
    '../../../shared/rp2/emu-example/bootrom.mjs',
  ].filter(Boolean);
  for (const c of candidates) {
    const url = c.startsWith('/') ? new URL('file://' + c) : new URL(c, import.meta.url);
    if (fs.existsSync(fileURLToPath(url))) return (await import(url.href)).bootromB1;
  }
  throw new Error('bootrom.mjs not found (set RP2EMU_BOOTROM)');
}

// ---- the MicroPython side --------------------------------------------------------------

const SCRIPT = String.raw`
import time, gc, asyncio, binascii
from array import array
from machine import Pin
import boards.pico_mcp3208 as P
from firmware.drivers.mcp3208 import Mcp3208Stream
from firmware.drivers.ws2812 import PioOutput, Ws2812
from firmware.drivers.tm1637 import Display, Tm1637Wire
NB = ${NB}
N = P.SAMPLES_PER_BLOCK * 13
store = array('H', bytes(2 * N * NB))
mv = memoryview(store)
st = array('i', [0] * NB)
adc = Mcp3208Stream(sclk=P.ADC_SCLK, din=P.ADC_DIN, dout=P.ADC_DOUT, cs_a=P.ADC_CS_A, sm_id=P.ADC_SM, samples_per_block=P.SAMPLES_PER_BLOCK, sample_period_ns=P.SAMPLE_PERIOD_NS)
leds = Ws2812(PioOutput(P.LED_PIN, P.LED_SM), P.LED_COUNT)
disp = Display(Tm1637Wire(Pin(P.DISPLAY_CLK, Pin.OUT, value=1), Pin(P.DISPLAY_DIO, Pin.OPEN_DRAIN, value=1)))
def say_leds(k):
    print('LEDS', k, leds.brightness, ' '.join(str(w) for w in leds.words))

def say_disp(k):
    print('DISP', k, repr(disp.text), disp.level, int(disp.on), disp.errors, disp._wire.nacks, ' '.join(str(b) for b in disp.segments))

async def consume():
    for i in range(NB):
        b = await adc.block()
        st[i] = time.ticks_us()
        mv[i * N:(i + 1) * N] = b

async def side():
    await asyncio.sleep_ms(30)
    for i in range(12):
        leds.set(i, i * 20, 255 - i * 20, i * 7 + 1)
    leds.write()
    await asyncio.sleep_ms(2)
    say_leds(1)
    disp.show("12.4")
    await asyncio.sleep_ms(2)
    say_disp(1)
    leds.brightness = 100
    leds.fill(200, 100, 50)
    leds.set(11, 255, 0, 0)
    leds.write()
    await asyncio.sleep_ms(2)
    say_leds(2)
    disp.brightness(7)
    disp.show("-A- ")
    await asyncio.sleep_ms(2)
    say_disp(2)
    disp.show("0.35")
    await asyncio.sleep_ms(2)
    say_disp(3)
    disp.power(False)
    await asyncio.sleep_ms(2)
    say_disp(4)
    leds.brightness = 255
    leds.fill(0, 0, 0)
    leds.write()
    await asyncio.sleep_ms(2)
    say_leds(3)

async def main():
    adc.start()
    await asyncio.gather(consume(), side())
    adc.stop()

gc.collect()
print('SPB', P.SAMPLES_PER_BLOCK)
print('PHASE acquire')
asyncio.run(main())
print('PHASE report')
print('RATE', NB, st[NB - 1] - st[0], adc.blocks, adc.overruns, adc.missed_irqs)
for i in range(NB):
    base = i * N
    s = [0] * 13
    for k in range(P.SAMPLES_PER_BLOCK):
        o = base + k * 13
        for c in range(13):
            s[c] += store[o + c] * (k + 1)
    print('BLK', i, ' '.join(str(v) for v in store[base:base + 13]), '|', ' '.join(str(v) for v in s))

print('RAW', NB - 1, binascii.hexlify(bytes(store[(NB - 1) * N:NB * N])).decode())
print('BITBANG', adc.read_raw(0, 3), adc.read_raw(1, 4), adc.read_raw(1, 7))
print('PHASE idle_adc')
adc.start()
time.sleep_ms(1000)
print('PHASE busy_adc')
t0 = time.ticks_ms()
n = 0
while time.ticks_diff(time.ticks_ms(), t0) < 400:
    n += 1

print('PHASE idle_nopio')
adc.stop()
time.sleep_ms(1000)
print('PHASE busy_nopio')
t0 = time.ticks_ms()
n = 0
while time.ticks_diff(time.ticks_ms(), t0) < 400:
    n += 1

print('PHASE absent')
time.sleep_ms(50)
adc.start()
b = None
while b is None:
    b = adc.poll()
    time.sleep_ms(1)

b = None
while b is None:
    b = adc.poll()
    time.sleep_ms(1)

adc.stop()
print('ABSENT', ' '.join(str(v) for v in b[N - 13:N]))
Pin(P.ADC_DOUT, Pin.IN, Pin.PULL_UP)
adc.start()
b = None
while b is None:
    b = adc.poll()
    time.sleep_ms(1)

b = None
while b is None:
    b = adc.poll()
    time.sleep_ms(1)

adc.stop()
print('ABSENT_PULLUP', ' '.join(str(v) for v in b[N - 13:N]))
print('PHASE end')
print('##DONE##')
`;

// ---- the emulator side -----------------------------------------------------------------

const sim = new Simulator();
const mcu = sim.rp2040;
mcu.loadBootrom(await loadBootrom());
mcu.logger = new ConsoleLogger(LogLevel.Error);
{
  const buf = new Uint8Array(512);
  const fd = fs.openSync(image, 'r');
  while (fs.readSync(fd, buf) === buf.length) {
    const { flashAddress, payload } = decodeBlock(buf);
    mcu.flash.set(payload, flashAddress - 0x10000000);
  }
  fs.closeSync(fd);
}

// Codes: by default from a SampleRing indexed by simulated time, filled ahead by the loop's
// hook as the runner will fill it from the load simulator (here: 50 Hz sines + hashed noise
// per instant, so every instant is recognisable); --sine: sineCodes() called directly.
// The ring's period is the chip's real one: MicroPython's divider for pio_freq(312 us).
const freq = Math.floor((2109e9 + 156000) / 312000); // firmware.drivers.mcp3208.pio_freq(312000)
const instantNs = (2109 * micropythonDivider(freq) * 1e9) / 125e6;
const ring = new SampleRing({ periodNs: instantNs, capacity: 4096 });
const ringValues = (k) =>
  Array.from({ length: 13 }, (_, i) => {
    const v = 2048 + (300 + 100 * i) * Math.sin(2 * Math.PI * 50 * ((k * instantNs) / 1e9) + (2 * Math.PI * i) / 13);
    return Math.max(0, Math.min(4095, Math.round(v + 6 * hashNoise(k, i))));
  });
const feed = () => {
  while (ring.produced < ring.wanted(sim.clock.nanos) + 128) ring.push(ringValues(ring.produced));
};
feed();
const loop = installPioClock(sim, {
  fast: !opt.naive,
  pace: opt.pace === true ? 1 : opt.pace ? Number(opt.pace) : false,
  hookUs: opt.sine ? 0 : 2000,
  onHook: opt.sine ? null : feed,
});
const adcModel = attachMcp3208(mcu, { now: () => loop.now(), codeFor: opt.sine ? sineCodes({ noise: 6 }) : ring.codeFor });
const frames = [];
const ledModel = attachWs2812(mcu, { now: () => loop.now(), onFrame: (f) => frames.push(f) });
const dispChanges = [];
const dispModel = attachTm1637(mcu, { now: () => loop.now(), onChange: (s) => dispChanges.push(s) });

const checks = [];
const check = (name, ok, detail = '') => {
  checks.push({ name, ok: !!ok, detail });
  if (!ok || opt.echo) console.error(`[selftest] ${ok ? 'ok  ' : 'FAIL'} ${name} ${detail}`);
};

const t0 = performance.now();
const phases = [];
let phase = null;
const mark = (name) => {
  const now = { name, wall: performance.now(), sim: sim.clock.nanos, cpu: loop.stats.cpuInstr, pio: loop.stats.pioInstr };
  if (phase) {
    const wallS = (now.wall - phase.wall) / 1000;
    const simS = (now.sim - phase.sim) / 1e9;
    phases.push({
      phase: phase.name,
      simS: +simS.toFixed(4),
      wallS: +wallS.toFixed(3),
      simPerWall: +(simS / wallS).toFixed(4),
      cpuInstrPerSimS: Math.round((now.cpu - phase.cpu) / simS),
      pioInstrPerSimS: Math.round((now.pio - phase.pio) / simS),
    });
  }
  phase = now;
};

// -- checks on the lines the script prints
const expectLeds = {
  1: Array.from({ length: 12 }, (_, i) => [i * 20, 255 - i * 20, i * 7 + 1]),
  2: Array.from({ length: 12 }, (_, i) => (i === 11 ? [100, 0, 0] : [78, 39, 19])), // x100/255
  3: Array.from({ length: 12 }, () => [0, 0, 0]),
};
const expectDisp = {
  1: { text: ' 12.4', segments: [0x00, 0x06, 0xdb, 0x66], brightness: 4, on: true },
  2: { text: '-A- ', segments: [0x40, 0x77, 0x40, 0x00], brightness: 7, on: true },
  3: { text: ' 0.35', segments: [0x00, 0xbf, 0x4f, 0x6d], brightness: 7, on: true },
  // display off is control byte 0x80: the level is not sent, the chip's field reads 0
  4: { text: ' 0.35', segments: [0x00, 0xbf, 0x4f, 0x6d], brightness: 0, on: false },
};
let blkChecked = 0;
let blkBad = 0;
let firstInstant = null;
let prevInstant = null;
let rate = null;
let SPB = 64; // sample instants per block: the board module's, printed first by the script
let N = SPB * 13;

function onLine(line) {
  const w = line.trim().split(/\s+/);
  if (w[0] === 'SPB') {
    SPB = Number(w[1]);
    N = SPB * 13;
  } else if (w[0] === 'PHASE') {
    mark(w[1]);
    errorsAt[w[1]] = JSON.parse(JSON.stringify(adcModel.stats));
    ringAt[w[1]] = { ...ring.stats };
    if (w[1] === 'absent') adcModel.setPresent(1, false);
  }
  else if (w[0] === 'LEDS') {
    const k = Number(w[1]);
    const words = w.slice(3).map(Number);
    const f = frames[frames.length - 1];
    const fromWords = words.map((x) => [(x >> 8) & 255, (x >> 16) & 255, x & 255]);
    check(`ws2812 frame ${k} decoded = driver words`, f && JSON.stringify(f.colors) === JSON.stringify(fromWords),
      f ? JSON.stringify(f.colors.slice(0, 3)) : 'no frame');
    check(`ws2812 frame ${k} colours = expected`, f && JSON.stringify(f.colors) === JSON.stringify(expectLeds[k]),
      f ? `bits ${f.bits} malformed ${f.malformed} ${((f.endNs - f.startNs) / 1000).toFixed(1)} us` : '');
  } else if (w[0] === 'DISP') {
    const k = Number(w[1]);
    const s = dispModel.state;
    const e = expectDisp[k];
    const got = { text: s.text, segments: s.segments, brightness: s.brightness, on: s.on };
    check(`tm1637 ${k} = ${JSON.stringify(e.text)}`, JSON.stringify(got) === JSON.stringify(e), JSON.stringify(got));
    const fw = w.slice(-4).map(Number);
    check(`tm1637 ${k} model segments = driver's`, JSON.stringify(fw) === JSON.stringify(s.segments), line);
    check(`tm1637 ${k} no NACK / errors`, w[w.length - 6] === '0' && w[w.length - 5] === '0', line);
  } else if (w[0] === 'RATE') {
    const [nb, dt, blocks, overruns, missed] = w.slice(1).map(Number);
    rate = { blocksPerS: ((nb - 1) * 1e6) / dt, samplesPerSPerChannel: ((nb - 1) * SPB * 1e6) / dt, blocks, overruns, missed_irqs: missed };
    check('mcp3208 no overruns / missed IRQs', overruns === 0 && missed === 0, `${overruns} ${missed}`);
  } else if (w[0] === 'BLK') {
    const i = Number(w[1]);
    const bar = w.indexOf('|');
    const first = w.slice(2, bar).map(Number);
    const sums = w.slice(bar + 1).map(Number);
    const inst = adcModel.findInstant(first);
    let ok = inst >= 0;
    let why = ok ? `instant ${inst}` : 'first instant not in the model log';
    if (ok) {
      const exp = new Array(13).fill(0);
      for (let k = 0; k < SPB; k++) {
        const c = adcModel.instantCodes(inst + k);
        for (let ch = 0; ch < 13; ch++) exp[ch] += c[ch] * (k + 1);
      }
      const bad = exp.map((v, ch) => (v === sums[ch] ? -1 : ch)).filter((x) => x >= 0);
      if (bad.length) {
        ok = false;
        why = `channels ${bad} differ`;
      }
      if (firstInstant === null) firstInstant = inst;
      instTimes.push([inst, adcModel.log.get(adcModel._instants.get(inst)).tNs]);
      if (prevInstant !== null && inst !== prevInstant + SPB) {
        ok = false;
        why += ` (not contiguous: prev ${prevInstant})`;
      }
      prevInstant = inst;
    }
    blkChecked++;
    if (!ok) {
      blkBad++;
      check(`mcp3208 block ${i}`, false, why);
    }
  } else if (w[0] === 'RAW') {
    const i = Number(w[1]);
    const bytes = Buffer.from(w[2], 'hex');
    const inst0 = firstInstant + SPB * i;
    let bad = 0;
    for (let k = 0; k < SPB; k++) {
      const c = adcModel.instantCodes(inst0 + k);
      for (let ch = 0; ch < 13; ch++) if (bytes.readUInt16LE(2 * (k * 13 + ch)) !== c[ch]) bad++;
    }
    check(`mcp3208 block ${i} raw: all ${N} values = model's`, bytes.length === 2 * N && bad === 0, `${bad} differ`);
  } else if (w[0] === 'BITBANG') {
    const got = w.slice(1).map(Number);
    const L = adcModel.log;
    const last = [L.get(L.count - 3), L.get(L.count - 2), L.get(L.count - 1)];
    const okc = last.every((e, j) => e.code === got[j]) && last[0].adc === 0 && last[0].channel === 3 &&
      last[1].adc === 1 && last[1].channel === 4 && last[2].adc === 1 && last[2].channel === 7;
    check('mcp3208 read_raw (bit-banged) = model', okc, `${got} vs ${last.map((e) => `${e.adc}/${e.channel}:${e.code}`)}`);
  } else if (w[0] === 'ABSENT') {
    absentResult = w.slice(1).map(Number);
  } else if (w[0] === 'ABSENT_PULLUP') {
    absentPullup = w.slice(1).map(Number);
  }
}
let absentResult = null;
let absentPullup = null;
const errorsAt = {};
const ringAt = {};
const instTimes = [];

// -- the REPL driver (as ../shared/rp2/emu-example/run.mjs)
const cdc = new USBCDC(mcu.usbCtrl);
if (!opt['noisy-usb']) quietUsbCdc(cdc);
cdc.onDeviceConnected = () => cdc.sendSerialByte(13);
const send = (s) => {
  for (const b of Buffer.from(s, 'utf8')) cdc.sendSerialByte(b);
};
let out = '';
let line = '';
let state = 'boot';
let lines = [];
let prompts = 0;
let transcript = '';
cdc.onSerialData = (value) => {
  const text = Buffer.from(value).toString('latin1');
  if (opt.echo) process.stdout.write(text);
  transcript += text;
  out += text;
  for (const ch of text) {
    if (ch === '\n') {
      const l = line.replace(/\r$/, '');
      if (state === 'sent' && !l.startsWith('=== ')) {
        if (l.includes('##DONE##')) return finish(0);
        if (l.startsWith('Traceback') || /Error:/.test(l)) console.error('[selftest] firmware: ' + l);
        onLine(l);
      }
      line = '';
    } else line += ch;
  }
  if (state === 'boot' && out.includes('>>> ')) {
    state = 'paste';
    mark('boot');
    send('\x05');
  } else if (state === 'paste' && out.includes('paste mode;')) {
    state = 'lines';
    lines = SCRIPT.split('\n');
  }
  if (state === 'lines') {
    const seen = out.split('=== ').length - 1;
    while (prompts < seen) {
      prompts++;
      if (lines.length) send(lines.shift() + '\r');
      else {
        send('\x04');
        state = 'sent';
        break;
      }
    }
  }
};

function finish(code) {
  mark('done');
  loop.stop();
  check(`mcp3208 all ${NB} blocks = model (${blkChecked} checked)`, blkChecked === NB && blkBad === 0, `${blkBad} bad`);
  const conv = adcModel.stats.conversions;
  const L = adcModel.log;
  // instants per simulated second from the model's own log (first SPB*NB instants)
  let periodNs = null;
  if (instTimes.length > 1) {
    const [iA, tA] = instTimes[0];
    const [iB, tB] = instTimes[instTimes.length - 1];
    periodNs = (tB - tA) / (iB - iA);
  }
  // MicroPython computes the divider as floor(clk_sys * 256 / freq): 18 + 125/256 for the
  // 6 759 615 Hz asked for 312 us, so one instant is 2109 x 18.48828 / 125 MHz = 311.934 us
  const sm0 = mcu.pio[0].machines[0];
  const divider = sm0.clockDivInt + sm0.clockDivFrac / 256;
  const expectNs = (2109 * divider * 1e9) / mcu.clkSys;
  check(`mcp3208 sample period on the wire = 2109 PIO cycles at divider ${divider} = ${expectNs.toFixed(2)} ns`,
    periodNs !== null && Math.abs(periodNs - expectNs) < 0.5, `${periodNs} ns (nominal 312000)`);
  if (rate) {
    const expectBlocks = 1e9 / (SPB * expectNs);
    check(`mcp3208 blocks/s (chip ticks_us) = ${expectBlocks.toFixed(3)}`, Math.abs(rate.blocksPerS - expectBlocks) < 0.02, rate.blocksPerS.toFixed(3));
  }
  const s = adcModel.stats;
  const a = errorsAt.acquire;
  const r = errorsAt.report;
  check('mcp3208 no protocol errors while streaming', a && r && r.errors === a.errors, JSON.stringify(r));
  check('mcp3208 no timing violations', !Object.values(s.timing).some((x) => x), JSON.stringify(s.timing));
  // Mcp3208Stream.stop() halts the state machine wherever it is: CS can stay low mid-frame
  // until the pins are reclaimed (a harmless aborted conversion, counted as csGlitch)
  check('mcp3208 errors only frames cut by stop()', s.errors === s.csGlitch + s.badCommand && s.errors <= 4,
    `csGlitch ${s.csGlitch} badCommand ${s.badCommand}`);
  const divInfo = { int: sm0.clockDivInt, frac: sm0.clockDivFrac, periodNs: expectNs };
  void divInfo;
  check('ws2812 no malformed bits', ledModel.stats.malformedBits === 0 && ledModel.stats.partialLed === 0, JSON.stringify(ledModel.stats));
  check('ws2812 3 frames', ledModel.stats.frames === 3, `${ledModel.stats.frames}`);
  check('tm1637 no aborted transactions / unknown commands', dispModel.stats.aborted === 0 && dispModel.stats.unknown === 0 && dispModel.stats.contention === 0, JSON.stringify(dispModel.stats));
  check('ADC B absent: ADC B codes read 0 (DOUT pad pull-down), ADC A unaffected',
    absentResult && absentResult.slice(8).every((v) => v === 0) && absentResult.slice(0, 8).some((v) => v > 0),
    absentResult ? absentResult.join(' ') : 'no result');
  if (!opt.sine) {
    // while streaming (later phases stop / restart the stream: skipped instants are real gaps)
    const a = ringAt.acquire;
    const r = ringAt.report;
    const d = a && r ? Object.fromEntries(Object.keys(r).map((k) => [k, r[k] - a[k]])) : null;
    check('SampleRing fed by the hook: no misses, no repeated / skipped instants while streaming',
      d && d.misses === 0 && d.repeats === 0 && d.skips === 0 && d.hits >= 13 * SPB * NB,
      JSON.stringify(d));
  }
  check('ADC B absent, DOUT pad pulled up: ADC B codes > 4095 (the driver\'s "missing" mark)',
    absentPullup && absentPullup.slice(8).every((v) => v > 4095) && absentPullup.slice(0, 8).every((v) => v <= 4095),
    absentPullup ? absentPullup.join(' ') : 'no result');
  const failed = checks.filter((c) => !c.ok);
  const summary = {
    ok: code === 0 && failed.length === 0,
    mode: opt.naive ? 'naive' : 'fast',
    pace: loop.opts.pace,
    image: image.split('/').slice(-1)[0],
    checks: checks.length,
    failed: failed.map((c) => `${c.name}: ${c.detail}`),
    rate,
    periodNs,
    pio0sm0Divider: { int: sm0.clockDivInt, frac: sm0.clockDivFrac, instantNs: expectNs },
    adc: { conversions: conv, stats: s },
    ring: opt.sine ? null : ring.stats,
    ws2812: ledModel.stats,
    tm1637: dispModel.stats,
    displayChanges: dispChanges.map((c) => [c.text, c.brightness, c.on]),
    phases,
    loop: loop.stats,
    wallS: +((performance.now() - t0) / 1000).toFixed(2),
    simS: +(sim.clock.nanos / 1e9).toFixed(3),
  };
  const json = JSON.stringify(summary, (k, v) => (v === Infinity ? null : v), 2);
  if (opt.json) fs.writeFileSync(opt.json, json);
  if (opt.transcript) fs.writeFileSync(opt.transcript, transcript);
  console.log(json);
  process.exit(code === 0 ? (failed.length ? 1 : 0) : code);
}

setTimeout(() => {
  console.error(`[selftest] TIMEOUT in state ${state}`);
  finish(3);
}, timeoutS * 1000);

mcu.core.PC = 0x10000000;
sim.execute();
