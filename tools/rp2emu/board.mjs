// One smartPDU group board on an emulated RP2040 (rp2040js), with its peripherals.
//
//   node board.mjs --flash FLASH.bin [--uf2 IMAGE.uf2] [--cdc-fd N] [--bus SOCKET --name NAME]
//                  [--bus-name NAME] [--pace 1] [--line-delay-us 2000] [--loadgen '["CMD", ...]']
//                  [--uid HEX]
//
// - Flash: a 2 MB image file is the board's flash (kept between runs, like a real board's:
//   the littlefs filesystem with /lib and /config survives); `--uf2` writes a UF2 into it
//   first, block by block, as the BOOTSEL drive does. Erase/program go through the bootrom
//   (flash.mjs); writes are saved to the file.
// - USB CDC: bytes to and from file descriptor `--cdc-fd` (the master of a pseudo-terminal
//   that the Python side made: mpremote and the console open its slave like /dev/ttyACM0),
//   with flow control towards the device (the package's CDC FIFO drops past 512 bytes).
// - UART0 (uart.mjs: a PL011 with line timing) + DE on GP2, bridged to the virtual RS-485
//   bus (tools/virtual/vbus.py) as a `timed` endpoint. A paced chip runs LINE_DELAY_NS
//   behind the line, so each received byte is fed to the UART at its simulated line time
//   (stop bit end); each transmitted character is handed to the bus when its stop bit has
//   left, stamped with its start time. Only while DE is high (at the start and at the end of
//   the character) does the board drive the bus, and only while DE is low does it hear it.
// - Peripheral models at the pins of boards/pico_mcp3208.py: MCP3208 x2 (codes from
//   firmware/loadsim.py run by `--loadgen`, a MicroPython process), WS2812 chain, TM1637,
//   12 buttons (pulled up, pressed = low).
// - Watchdog: a WDT timeout resets the chip (flash kept, watchdog REASON and scratch set as
//   on silicon, so machine.reset_cause() reads WDT_RESET); machine.reset() likewise.
// - Time: simulated time runs as fast as the emulator can, or with `--pace 1` no faster than
//   CLOCK_MONOTONIC (under faketime, the dilated clock the rest of the virtual PDU runs on).
//
// Control: JSON lines on stdin ({"press": n, "hold_ms": t}, {"down": n}, {"up": n},
// {"load": {...}} as the sim panel takes, {"type": "text"} typed on the USB console,
// {"get": "stats"}, {"reset": true}, {"quit": true}); events as JSON lines on stdout
// ({"ready"}, {"leds"}, {"display"}, {"console": text the board wrote on USB}, {"usb"},
// {"reset"}, {"stats"}, {"error"}). Every event carries `t`, the simulated time in seconds.
import fs from 'fs';
import net from 'net';
import { spawn } from 'child_process';
import { decodeBlock } from 'uf2';
import { Simulator, USBCDC, ConsoleLogger, LogLevel, GPIOPinState } from 'rp2040js';
import { bootromB1 } from './bootrom.mjs';
import { installUart } from './uart.mjs';
import { patchBootrom, flashBreakHandler } from './flash.mjs';
import { installPioClock, quietUsbCdc } from './pio_clock.mjs';
import { attachMcp3208 } from './mcp3208.mjs';
import { attachWs2812 } from './ws2812.mjs';
import { attachTm1637 } from './tm1637.mjs';
import { LoadCodes } from './loadcodes.mjs';
import { installFlashId, uidFromHex } from './flashid.mjs';

const FLASH_SIZE = 2 * 1024 * 1024;
const UART_DE = 2;
const BUTTON_PINS = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14];
const LED_PIN = 22;
const TM_CLK = 26;
const TM_DIO = 27;
const ADC_PINS = { dout: 16, sclk: 18, din: 19, cs: [20, 21] };
const WATCHDOG_TIMER_REASON = 1 << 0;
const HOOK_US = 250; // simulated time between I/O turns (bus, USB, buttons, pacing)
const LOADCODE_AHEAD_NS = 100_000_000; // ADC codes generated ahead of simulated time
const REANCHOR_NS = 200_000_000; // lag past which a paced board gives up catching up

function parseArgs(argv) {
  const opts = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [k, v] = a.includes('=') ? a.slice(2).split(/=(.*)/s) : [a.slice(2), argv[++i]];
    opts[k] = v;
  }
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
// A paced chip runs this far behind the line (simulated ns): a byte from the bus reaches the
// bridge before the chip's time reaches the byte's line time, so the UART gets it exactly
// then (not when node got round to it), and the stamp the firmware times its slots from is
// exact. The bus takes the chip's bytes that much after their line time (it places a timed
// record up to 50 ms in the past at its time).
const LINE_DELAY_NS = Number(opts['line-delay-us'] ?? 2000) * 1000;
const pace = opts.pace ? Number(opts.pace) : 0;
const monoNs = () => Number(process.hrtime.bigint());

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

// -- flash image ---------------------------------------------------------------------------

const flashPath = opts.flash;
if (!flashPath) throw new Error('--flash FILE is required');
const flashImage = new Uint8Array(FLASH_SIZE).fill(0xff);
if (fs.existsSync(flashPath)) flashImage.set(fs.readFileSync(flashPath).subarray(0, FLASH_SIZE));

function writeUf2(path) {
  const block = new Uint8Array(512);
  const fd = fs.openSync(path, 'r');
  let blocks = 0;
  try {
    while (fs.readSync(fd, block, 0, 512, null) === 512) {
      const { flashAddress, payload } = decodeBlock(block);
      const offset = flashAddress - 0x10000000;
      if (offset < 0 || offset + payload.length > FLASH_SIZE) throw new Error(`UF2 block outside flash: 0x${flashAddress.toString(16)}`);
      flashImage.set(payload, offset);
      blocks++;
    }
  } finally {
    fs.closeSync(fd);
  }
  if (!blocks) throw new Error(`${path}: no UF2 blocks`);
  return blocks;
}

if (opts.uf2) writeUf2(opts.uf2);
let flashDirty = false;
function saveFlash() {
  if (!flashDirty) return;
  const tmp = `${flashPath}.tmp`;
  fs.writeFileSync(tmp, flashImage);
  fs.renameSync(tmp, flashPath); // a crash mid-save keeps the previous image
  flashDirty = false;
}
flashDirty = true;
saveFlash();

// -- the chip ------------------------------------------------------------------------------

const { rom } = patchBootrom(bootromB1);
const traceSize = Number(opts.trace || 0);
const boardUid = uidFromHex(opts.uid || 'e6614103e7452d2f'); // a Pico's ID looks like this
const stats = { resets: 0, watchdogResets: 0, flash: {}, lagResets: 0, maxLagMs: 0, cdcDropped: 0, busTx: 0, busRx: 0, txWithoutDe: 0 };
let chip = null;
let watchdogScratch = new Uint32Array(8);
let resetReason = 0;
const buttonsDown = new Set();
const buttonTimers = new Map();

function buildChip(startNs = 0) {
  const clock = new (new Simulator().clock.constructor)();
  clock.nanosCounter = startNs; // simulated time goes on across resets
  const sim = new Simulator(clock);
  const mcu = sim.rp2040;
  mcu.logger = new ConsoleLogger(opts.verbose ? LogLevel.Warn : LogLevel.Error);
  mcu.loadBootrom(rom); // reset() clears flash: load the image after it
  mcu.flash.set(flashImage);
  installFlashId(mcu, boardUid);
  const c = { sim, mcu };
  c.loop = installPioClock(sim, { hookUs: HOOK_US, turnMs: 2, onHook: (ns) => hook(c, ns) });
  const now = () => c.loop.now();
  // After the loop is installed: it takes onBreak for itself.
  mcu.onBreak = flashBreakHandler(mcu, {
    stats: stats.flash,
    onWrite: (offset, length) => {
      flashImage.set(mcu.flash.subarray(offset, offset + length), offset);
      flashDirty = true;
    },
    otherBreak: (code) => fail(`breakpoint ${code} at 0x${mcu.core.PC.toString(16)}`),
  });
  const watchdog = mcu.peripherals[0x40058];
  watchdog.scratchData.set(watchdogScratch);
  watchdog.reason = resetReason;
  watchdog.onWatchdogTrigger = () => {
    // The chip resets now. (The package's periodic alarm would otherwise fire again at once
    // for ever at its reload of 0, inside one clock tick: node hung there.)
    watchdog.timer.enable = false;
    watchdog.alarm.enable = false;
    c.resetPending = 'watchdog';
    c.loop.stop();
    setImmediate(() => {
      if (c === chip && !shuttingDown) resetChip('watchdog');
    });
  };
  c.watchdog = watchdog;
  const uart = installUart(mcu, 0);
  c.uart = uart;
  // Buttons and idle inputs: pulled up, a pressed button pulls its pin low.
  for (const pin of BUTTON_PINS) mcu.gpio[pin].setInputValue(!buttonsDown.has(pin));
  mcu.gpio[1].setInputValue(true);
  c.deHigh = false;
  mcu.gpio[UART_DE].addListener((state) => {
    c.deHigh = state === GPIOPinState.High;
  });
  uart.rxGate = () => !c.deHigh;
  uart.onTxChar = (byte, startNs, endNs) => busTxChar(c, byte, startNs, endNs);
  uart.onTxDone = (byte, startNs) => busTxDone(c, byte, startNs);
  loadCodes.restart();
  c.adc = attachMcp3208(mcu, {
    ...ADC_PINS,
    now,
    codeFor: (adc, ch, t, info) => loadCodes.codeFor(adc, ch, t, info),
  });
  const tSim = () => now() / 1e9;
  c.leds = attachWs2812(mcu, {
    pin: LED_PIN,
    count: 12,
    now,
    onFrame: (frame) => emit({ leds: frame.colors, malformed: frame.malformed, t: frame.latchNs / 1e9 }),
  });
  c.display = attachTm1637(mcu, {
    clk: TM_CLK,
    dio: TM_DIO,
    now,
    onChange: (state) =>
      emit({ display: state.text, segments: Array.from(state.segments), on: state.on, level: state.brightness, t: state.timeNs / 1e9 }),
  });
  c.cdc = new USBCDC(mcu.usbCtrl);
  quietUsbCdc(c.cdc); // no empty OUT packet every 10 us: the core can sleep
  c.cdc.onDeviceConnected = () => emit({ usb: 'connected', t: tSim() });
  c.cdc.onSerialData = (data) => cdcOut(data);
  if (traceSize) {
    // Debugging aid (--trace N): the last N program counters, printed with a fault.
    const core = mcu.core;
    const execute = core.executeInstruction.bind(core);
    c.trace = new Uint32Array(traceSize);
    c.traceAt = 0;
    let last = 0;
    const put = (a, b, x) => {
      c.trace[c.traceAt++ % traceSize] = a;
      c.trace[c.traceAt++ % traceSize] = b;
      c.trace[c.traceAt++ % traceSize] = x;
    };
    // Watch the frames of the active exceptions: who writes into one before its return?
    c.frameWrites = [];
    const frames = []; // [lo, savedPC, exception]
    for (const name of ['writeUint32', 'writeUint16', 'writeUint8']) {
      const w = mcu[name].bind(mcu);
      mcu[name] = (addr, value) => {
        for (const f of frames) {
          if (addr >= f[0] && addr < f[0] + 32 && !f[3]) {
            c.frameWrites.push(`${name} ${addr.toString(16)}=${value.toString(16)} by PC ${core.PC.toString(16)} IPSR ${core.IPSR} SP ${core.SP.toString(16)} (frame of exc ${f[2]} at ${f[0].toString(16)})`);
            if (c.frameWrites.length > 60) c.frameWrites.shift();
          }
        }
        w(addr, value);
      };
    }
    const entry = core.exceptionEntry.bind(core);
    core.exceptionEntry = (n) => {
      const from = core.PC;
      entry(n);
      frames.push([core.SP, from & ~1, n, false]);
      c.frameWrites.push(`ENTER ${n} from ${from.toString(16)} frame ${core.SP.toString(16)} depth ${frames.length}`);
      put(from, core.PC, 0x100 | n); // exception entry: interrupted PC, handler, 0x100 + number
      last = core.PC;
    };
    const ret = core.exceptionReturn.bind(core);
    core.exceptionReturn = (r) => {
      const f = frames.pop();
      ret(r);
      c.frameWrites.push(`RET ${r.toString(16)} to ${core.PC.toString(16)} (${f ? f[2] + ' from ' + f[1].toString(16) : 'no frame'}) SP ${core.SP.toString(16)}`);
      if (c.frameWrites.length > 60) c.frameWrites.splice(0, c.frameWrites.length - 60);
      if (f && (core.PC & ~1) !== f[1]) {
        c.frameWrites.push(`RETURN from exc ${f[2]} to ${core.PC.toString(16)}, entered from ${f[1].toString(16)}`);
      }
      put(r, core.PC, 0x200 | core.IPSR); // exception return: EXC_RETURN, resumed PC
      last = core.PC;
    };
    core.executeInstruction = () => {
      const pc = core.PC;
      if ((pc >= 0x4000 && pc < 0x10000000) || (pc >= 0x10200000 && pc < 0x20000000) || pc >= 0x20042000) {
        throw new Error(`PC left the code: 0x${pc.toString(16)} after 0x${last.toString(16)}`);
      }
      const step = pc - last;
      if (step !== 2 && step !== 4) {
        // only jumps: where from, where to
        c.trace[c.traceAt++ % traceSize] = last;
        c.trace[c.traceAt++ % traceSize] = pc;
        c.trace[c.traceAt++ % traceSize] = core.IPSR;
      }
      last = pc;
      return execute();
    };
  }
  if (profilePath) installProfile(c);
  mcu.core.PC = 0x10000000;
  return c;
}

// Profiling aid (environment RP2EMU_PROFILE=FILE): every PROFILE_EVERY-th instruction's
// program counter and link register are counted; the histograms are written to FILE as JSON
// at exit (tools/rp2emu/profile.py maps them to the image's symbols).
const profilePath = process.env.RP2EMU_PROFILE || '';
const PROFILE_EVERY = 61; // prime: does not beat with a loop's length
const profile = { pc: new Map(), lr: new Map(), samples: 0 };
function installProfile(c) {
  const core = c.mcu.core;
  const execute = core.executeInstruction.bind(core);
  let countdown = PROFILE_EVERY;
  core.executeInstruction = () => {
    if (--countdown === 0) {
      countdown = PROFILE_EVERY;
      const pc = core.PC;
      profile.pc.set(pc, (profile.pc.get(pc) || 0) + 1);
      const key = pc * 0x100000000 + (core.LR >>> 0);
      profile.lr.set(key, (profile.lr.get(key) || 0) + 1);
      profile.samples++;
    }
    return execute();
  };
}
function saveProfile() {
  if (!profilePath) return;
  const pairs = [];
  for (const [k, n] of profile.lr) pairs.push([Math.floor(k / 0x100000000), k % 0x100000000, n]);
  const out = { every: PROFILE_EVERY, samples: profile.samples, pc: Array.from(profile.pc), pc_lr: pairs };
  fs.writeFileSync(profilePath, JSON.stringify(out));
}

function resetChip(why) {
  // The watchdog's scratch registers and reason survive a reset; RAM and peripherals do not.
  const old = chip;
  watchdogScratch = new Uint32Array(old.watchdog.scratchData);
  resetReason = why === 'watchdog' ? WATCHDOG_TIMER_REASON : 0;
  const t = old.mcu.clock.nanos;
  stats.resets++;
  if (why === 'watchdog') stats.watchdogResets++;
  old.loop.stop();
  saveFlash();
  chip = buildChip(t);
  emit({ reset: why, t: t / 1e9 });
  // reset_usb_boot() (machine.bootloader()) leaves the bootrom's magic and an entry point in
  // the bootrom in the watchdog scratch registers: the chip comes up in BOOTSEL as a USB
  // drive, which this emulator has no model of. It stays there (no CDC, no firmware) until
  // the board is started again, e.g. with a UF2 written into its flash.
  if (watchdogScratch[4] === 0xb007c0d3 && watchdogScratch[7] < 0x4000) {
    emit({ bootsel: true, t: t / 1e9 });
    return;
  }
  chip.loop.start();
}

function fail(message) {
  emit({ error: message, t: chip ? chip.mcu.clock.nanos / 1e9 : 0 });
  shutdown(1);
}

// -- MCP3208 codes ---------------------------------------------------------------------------

const loadCodes = new LoadCodes(opts.loadgen ? spawnLoadgen(opts.loadgen) : null);

function spawnLoadgen(command) {
  const [cmd, ...args] = JSON.parse(command);
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  child.on('exit', (code) => {
    if (!shuttingDown) fail(`load generator exited (${code})`);
  });
  return child;
}

// -- USB CDC <-> pseudo-terminal -------------------------------------------------------------

const cdcFd = opts['cdc-fd'] !== undefined ? Number(opts['cdc-fd']) : -1;
const hostQueue = []; // bytes from the host not yet taken by the device
let outBacklog = Buffer.alloc(0);
const OUT_BACKLOG_MAX = 64 * 1024;
const readBuf = Buffer.alloc(4096);

let consoleText = ''; // device output not yet reported as a `console` event

function cdcOut(data) {
  consoleText += Buffer.from(data).toString('latin1');
  if (cdcFd < 0) return;
  outBacklog = Buffer.concat([outBacklog, Buffer.from(data)]);
  if (outBacklog.length > OUT_BACKLOG_MAX) {
    // Nobody reads the port: drop the oldest output, as a terminal nobody opened would.
    stats.cdcDropped += outBacklog.length - OUT_BACKLOG_MAX;
    outBacklog = outBacklog.subarray(outBacklog.length - OUT_BACKLOG_MAX);
  }
}

function pumpCdc() {
  if (consoleText) {
    emit({ console: consoleText, t: chip.mcu.clock.nanos / 1e9 });
    consoleText = '';
  }
  if (cdcFd < 0) {
    feedDevice();
    return;
  }
  while (outBacklog.length) {
    let n;
    try {
      n = fs.writeSync(cdcFd, outBacklog);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EIO') break;
      throw e;
    }
    outBacklog = outBacklog.subarray(n);
  }
  for (;;) {
    let n;
    try {
      n = fs.readSync(cdcFd, readBuf, 0, readBuf.length, null);
    } catch (e) {
      if (e.code === 'EAGAIN' || e.code === 'EIO') break;
      throw e;
    }
    if (!n) break;
    for (let i = 0; i < n; i++) hostQueue.push(readBuf[i]);
  }
  feedDevice();
}

function feedDevice() {
  const fifo = chip.cdc.txFIFO;
  let room = fifo.size - fifo.itemCount;
  while (room-- > 0 && hostQueue.length) chip.cdc.sendSerialByte(hostQueue.shift());
}

// -- RS-485 bridge to the virtual bus --------------------------------------------------------

let bus = null;
let busIn = Buffer.alloc(0);
let monoAnchorNs = 0; // CLOCK_MONOTONIC ns at simulated time 0
let txRecord = null; // [startNs, bytes[]] being collected

function simToMonoUs(simNs) {
  return BigInt(Math.round(simToMonoNs(simNs) / 1000));
}

function busTxChar(c, byte, startNs, endNs) {
  // The character starts: only with DE high does it reach the line at all.
  if (!c.deHigh) {
    stats.txWithoutDe++; // the MAX3485's driver is off: nothing reaches the line
    return;
  }
  c.txDriven = startNs;
}

function busTxDone(c, byte, startNs) {
  // Its stop bit has left the shifter: the character is on the line from startNs. DE dropped
  // meanwhile cuts it (counted; the receivers would see a broken character: not sent).
  if (c.txDriven !== startNs) return;
  c.txDriven = -1;
  if (!c.deHigh) {
    stats.txCut = (stats.txCut || 0) + 1;
    return;
  }
  // Consecutive characters join one record (sent at the next I/O turn, at the latest
  // HOOK_US later): the bus chains a transmitter's records, a frame stays one piece.
  const charNs = c.uart.charNanos;
  if (txRecord && Math.abs(startNs - txRecord.lastNs - charNs) < charNs / 4) {
    txRecord.bytes.push(byte);
    txRecord.lastNs = startNs;
  } else {
    flushTx();
    txRecord = { startNs, lastNs: startNs, bytes: [byte] };
  }
}

function flushTx() {
  if (!txRecord || !bus) {
    txRecord = null;
    return;
  }
  const data = Buffer.from(txRecord.bytes);
  const head = Buffer.alloc(10);
  head.writeUInt16LE(data.length, 0);
  head.writeBigUInt64LE(simToMonoUs(txRecord.startNs), 2);
  bus.write(Buffer.concat([head, data]));
  stats.busTx += data.length;
  txRecord = null;
}

function busData(chunk) {
  busIn = Buffer.concat([busIn, chunk]);
  while (busIn.length >= 10) {
    const n = busIn.readUInt16LE(0);
    if (busIn.length < 10 + n) break;
    const endUs = Number(busIn.readBigUInt64LE(2));
    const data = busIn.subarray(10, 10 + n);
    busIn = busIn.subarray(10 + n);
    const uart = chip.uart;
    const charNs = uart.charNanos;
    const endSim = (endUs * 1000 - monoAnchorNs) * (pace || 1);
    for (let i = 0; i < n; i++) {
      const at = endSim - (n - 1 - i) * charNs;
      stats.busRx++;
      uart.receive(data[i], at);
    }
  }
}

function connectBus(path, name) {
  bus = net.createConnection(path);
  bus.on('connect', () => bus.write(`@vbus ${name} timed\n`));
  bus.on('data', busData);
  bus.on('error', (e) => fail(`bus ${path}: ${e.message}`));
  bus.on('close', () => {
    if (!shuttingDown) fail('bus closed');
  });
}

// -- buttons -------------------------------------------------------------------------------------

function setButton(number, down) {
  if (!Number.isInteger(number) || number < 1 || number > 12) throw new Error('button must be 1..12');
  const pin = BUTTON_PINS[number - 1];
  if (down) buttonsDown.add(pin);
  else buttonsDown.delete(pin);
  chip.mcu.gpio[pin].setInputValue(!down);
}

function pressButton(number, holdMs) {
  setButton(number, true);
  const releaseAt = chip.mcu.clock.nanos + holdMs * 1e6;
  buttonTimers.set(number, releaseAt);
}

function releaseDueButtons() {
  const now = chip.mcu.clock.nanos;
  for (const [number, at] of buttonTimers) {
    if (at <= now) {
      buttonTimers.delete(number);
      setButton(number, false);
    }
  }
}

// -- control ---------------------------------------------------------------------------------------

function snapshot() {
  const c = chip;
  return {
    stats: {
      ...stats,
      sim_s: c.mcu.clock.nanos / 1e9,
      wall_s: (monoNs() - startMono) / 1e9,
      uart: c.uart.stats,
      adc: c.adc.stats,
      leds: c.leds.stats,
      display: c.display.stats,
      loop: c.loop.stats,
      speed: c.loop.speed(),
      codes: loadCodes.stats,
    },
    t: c.mcu.clock.nanos / 1e9,
  };
}

let controlBuf = '';
function controlLine(line) {
  if (!line.trim()) return;
  let msg;
  try {
    msg = JSON.parse(line);
    if ('press' in msg) pressButton(msg.press, msg.hold_ms ?? 150);
    else if ('down' in msg) setButton(msg.down, true);
    else if ('up' in msg) setButton(msg.up, false);
    else if ('load' in msg) loadCodes.setLoad(msg.load);
    else if (msg.get === 'stats') emit(snapshot());
    else if (msg.get === 'trace') emit({ trace: chip.trace ? Array.from(chip.trace) : [], at: chip.traceAt, t: chip.mcu.clock.nanos / 1e9 });
    else if (typeof msg.type === 'string') for (const b of Buffer.from(msg.type, 'latin1')) hostQueue.push(b);
    else if (msg.reset) chip.resetPending = 'reset';
    else if (msg.quit) shutdown(0);
    else throw new Error('unknown message');
  } catch (e) {
    emit({ error: `control: ${e.message}`, line: line.slice(0, 200), t: chip.mcu.clock.nanos / 1e9 });
  }
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (s) => {
  controlBuf += s;
  let i;
  while ((i = controlBuf.indexOf('\n')) >= 0) {
    controlLine(controlBuf.slice(0, i));
    controlBuf = controlBuf.slice(i + 1);
  }
});
process.stdin.on('end', () => shutdown(0)); // our parent went away

// -- main loop ------------------------------------------------------------------------------------

let shuttingDown = false;
const startMono = monoNs();
let resumeTimer = null;
let nextTickNs = 0;

function simToMonoNs(simNs) {
  return monoAnchorNs + (pace ? simNs / pace : simNs);
}

// Every HOOK_US of simulated time, from inside the run loop: I/O, resets, pacing.
function hook(c, nowNs) {
  if (c !== chip || shuttingDown) return;
  if (c.resetPending) {
    resetChip(c.resetPending);
    return;
  }
  releaseDueButtons();
  flushTx();
  pumpCdc();
  if (nowNs >= nextTickNs) {
    // the simulated clock, for a driver that waits on simulated time
    nextTickNs = nowNs + 100_000_000;
    emit({ tick: true, t: nowNs / 1e9 });
  }
  loadCodes.request(nowNs + LOADCODE_AHEAD_NS);
  if (!loadCodes.covers(nowNs + HOOK_US * 2000)) {
    // The load generator fell behind (only when running unpaced): wait for its codes
    // rather than let the ADC model make any up.
    stats.codeWaits = (stats.codeWaits || 0) + 1;
    c.loop.stop();
    loadCodes.whenCovered(nowNs + HOOK_US * 2000, () => resume(c));
    return;
  }
  if (pace) {
    const allowed = (monoNs() - monoAnchorNs) * pace - LINE_DELAY_NS;
    const lag = allowed - nowNs;
    if (lag > REANCHOR_NS) {
      // Too far behind the clock to catch up: let the line time jump rather than run
      // seconds late for ever (counted: a paced run should show none).
      monoAnchorNs += lag / pace;
      stats.lagResets++;
    } else if (lag > 0) {
      stats.maxLagMs = Math.max(stats.maxLagMs, lag / 1e6);
    } else {
      c.loop.stop();
      const waitMs = Math.max(1, Math.min(20, -lag / pace / 1e6));
      resumeTimer = setTimeout(() => resume(c), waitMs);
    }
  }
}

function resume(c) {
  resumeTimer = null;
  if (c === chip && !shuttingDown) c.loop.start();
}

// Between turns of the run loop the USB side still moves (a host typing while paced).
setInterval(() => {
  if (chip && !shuttingDown) pumpCdc();
}, 5).unref();

function shutdown(code) {
  if (shuttingDown) return;
  shuttingDown = true;
  try {
    saveProfile();
    saveFlash();
  } catch (e) {
    process.stderr.write(`saving flash: ${e.message}\n`);
  }
  if (resumeTimer) clearTimeout(resumeTimer);
  if (chip) chip.loop.stop();
  loadCodes.close();
  if (bus) bus.destroy();
  setTimeout(() => process.exit(code), 1000).unref(); // even if stdout's reader is gone
  process.stdout.write('', () => process.exit(code));
}

process.on('uncaughtException', (e) => {
  // The emulator throws where silicon would take a HardFault (e.g. an unaligned access):
  // report where the core was, so the fault can be found with addr2line.
  const core = chip?.mcu.core;
  let where = '';
  if (core) {
    const stack = [];
    for (let i = 0; i < 16; i++) stack.push(chip.mcu.readUint32(core.SP + 4 * i).toString(16));
    const regs = Array.from(core.registers.slice(0, 8), (r) => (r >>> 0).toString(16));
    if (chip.trace) {
      const t = [];
      const n = traceSize - (traceSize % 3);
      for (let i = 0; i < n; i++) t.push(chip.trace[(chip.traceAt + i) % traceSize].toString(16));
      process.stderr.write(`TRACE ${t.join(' ')}\n`);
      process.stderr.write(`FRAMEWRITES ${chip.frameWrites.join(' | ')}\n`);
    }
    where = ` (PC 0x${core.PC.toString(16)}, LR 0x${core.LR.toString(16)}, SP 0x${core.SP.toString(16)}; r0-r7 ${regs.join(' ')}; stack ${stack.join(' ')})`;
  }
  fail(`emulator: ${e.message}${where}`);
});
process.stdout.on('error', () => shutdown(0)); // our reader went away (EPIPE)
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => shutdown(0));
setInterval(saveFlash, 2000).unref();

chip = buildChip();
monoAnchorNs = monoNs();
if (opts.bus) connectBus(opts.bus, opts['bus-name'] || opts.name || 'rp2');
emit({ ready: true, pid: process.pid, t: 0 });
// The ADC must never answer a conversion with a made-up code: start with codes at hand.
loadCodes.whenCovered(0, () => chip.loop.start());
