// PL011 UART model for rp2040js with line timing, replacing the package's RPUART.
//
// Why: rp2040js 1.4.1's UART re-asserts the TX interrupt on every interrupt check, so
// MicroPython's UART IRQ handler (which clears it and returns) runs for ever and
// `machine.UART(...)` never returns. It also has no TX FIFO, BUSY flag, receive timeout
// (RX idle) interrupt, FIFO trigger levels, overrun or line timing, all of which the
// smartPDU's RS-485 driver uses (RX-idle stamp, `txdone()`, overrun counting).
//
// What this model does, after the ARM PrimeCell PL011 TRM (DDI 0183) as the RP2040 uses it:
// - TX FIFO (32, or 1 without FEN) feeding a shifter that takes one character time
//   (start + data + parity + stop bits at the programmed baud rate) of simulated time;
//   `onTxChar(byte, startNs, endNs)` is called as each character *starts* on the wire,
//   `onTxDone(byte, startNs)` when its stop bit has left.
// - FR: TXFE, TXFF, RXFE, RXFF, BUSY (FIFO not empty or shifter active).
// - TX interrupt when the TX FIFO level falls to the trigger level (IFLS); cleared by ICR
//   or by filling the FIFO above the level (the PL011 does not assert it on enable).
// - RX FIFO (32) with per-character error bits; RX interrupt at the trigger level; receive
//   timeout interrupt (RT) when the FIFO holds data and no character arrived for 32 bit
//   times; overrun (OE in DR and RSR) when a character arrives at a full FIFO.
// - `receive(byte, atNs)`: the character's stop bit ends at simulated time `atNs` (now if
//   that is past) — the bridge delivers bus bytes with their line times.
// - DMA requests for TX/RX kept asserted while there is room / data (as the package did for TX).
import { Simulator } from 'rp2040js';

// The package exports no peripheral classes: take RPUART from a chip's instance.
const RPUART = new Simulator().rp2040.uart[0].constructor;

const DR = 0x000;
const RSR = 0x004;
const FR = 0x018;
const ILPR = 0x020;
const IBRD = 0x024;
const FBRD = 0x028;
const LCR_H = 0x02c;
const CR = 0x030;
const IFLS = 0x034;
const IMSC = 0x038;
const RIS = 0x03c;
const MIS = 0x040;
const ICR = 0x044;
const DMACR = 0x048;
const IDS = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]; // PERIPHID0..3, PCELLID0..3

const FR_BUSY = 1 << 3;
const FR_RXFE = 1 << 4;
const FR_TXFF = 1 << 5;
const FR_RXFF = 1 << 6;
const FR_TXFE = 1 << 7;
const LCR_PEN = 1 << 1;
const LCR_STP2 = 1 << 3;
const LCR_FEN = 1 << 4;
const CR_UARTEN = 1 << 0;
const CR_TXE = 1 << 8;
const CR_RXE = 1 << 9;
const INT_RX = 1 << 4;
const INT_TX = 1 << 5;
const INT_RT = 1 << 6;
const INT_OE = 1 << 10;
const DR_OE = 1 << 11;
const FIFO_DEPTH = 32;
const TRIGGER_EIGHTHS = [1, 2, 4, 6, 7]; // IFLS selects 1/8, 1/4, 1/2, 3/4, 7/8 full
const RT_BITS = 32;

export class Pl011 extends RPUART {
  constructor(rp2040, name, irq, dreq) {
    super(rp2040, name, irq, dreq);
    this.clock = rp2040.clock;
    this.ifls = 0x12; // reset: both at 1/2
    this.dmacr = 0;
    this.rsr = 0;
    this.txFifo = [];
    this.rxFifo = []; // values with error bits (DR layout)
    this.shifting = false;
    this.txAlarm = this.clock.createAlarm(() => this.txCharDone());
    this.rtAlarm = this.clock.createAlarm(() => this.rxTimeout());
    this.pending = []; // [atNs, byte] waiting for their line time
    this.lastRxNs = -Infinity;
    this.rxAlarm = this.clock.createAlarm(() => this.deliverDue());
    this.onTxChar = null;
    this.onTxDone = null;
    this.txChar = null;
    this.rxGate = null;
    // rxLate: characters that reached the UART after their line time (the emulator behind
    // the line by more than the bridge's line delay), rxLateMaxUs the most by how much.
    this.stats = { txChars: 0, rxChars: 0, overruns: 0, rxDropped: 0, rxLate: 0, rxLateMaxUs: 0 };
  }

  get fifoDepth() {
    return this.lineCtrlRegister & LCR_FEN ? FIFO_DEPTH : 1;
  }

  /** Simulated ns one character occupies the line (start + data + parity + stop). */
  get charNanos() {
    const lcr = this.lineCtrlRegister;
    const bits = 1 + this.wordLength + (lcr & LCR_PEN ? 1 : 0) + (lcr & LCR_STP2 ? 2 : 1);
    const divider = this.baudDivider || 1;
    return (bits * 16 * divider * 1e9) / this.rp2040.clkPeri;
  }

  get bitNanos() {
    return (16 * (this.baudDivider || 1) * 1e9) / this.rp2040.clkPeri;
  }

  txLevel() {
    return (this.fifoDepth * TRIGGER_EIGHTHS[Math.min(this.ifls & 7, 4)]) / 8;
  }

  rxLevel() {
    return (this.fifoDepth * TRIGGER_EIGHTHS[Math.min((this.ifls >> 3) & 7, 4)]) / 8;
  }

  get flags() {
    const tx = this.txFifo.length;
    const rx = this.rxFifo.length;
    return (
      (tx === 0 ? FR_TXFE : 0) |
      (tx >= this.fifoDepth ? FR_TXFF : 0) |
      (rx === 0 ? FR_RXFE : 0) |
      (rx >= this.fifoDepth ? FR_RXFF : 0) |
      (tx > 0 || this.shifting ? FR_BUSY : 0)
    );
  }

  checkInterrupts() {
    this.rp2040.setInterrupt(this.irq, !!(this.interruptStatus & this.interruptMask));
    const { dma } = this.rp2040;
    if (this.enabled && this.txFifo.length < this.fifoDepth) dma.setDREQ(this.dreq.tx);
    else dma.clearDREQ(this.dreq.tx);
    if (this.rxFifo.length) dma.setDREQ(this.dreq.rx);
    else dma.clearDREQ(this.dreq.rx);
  }

  // -- transmit ------------------------------------------------------------------------

  startShifter() {
    if (this.shifting || !this.txFifo.length || !this.enabled || !this.txEnabled) return;
    const before = this.txFifo.length;
    const value = this.txFifo.shift();
    this.shifting = true;
    const start = this.clock.nanos;
    this.txChar = [value & 0xff, start];
    const span = this.charNanos;
    this.txAlarm.schedule(span);
    this.stats.txChars++;
    if (before > this.txLevel() && this.txFifo.length <= this.txLevel()) {
      this.interruptStatus |= INT_TX;
    }
    this.onTxChar?.(value & 0xff, start, start + span);
    this.checkInterrupts();
  }

  txCharDone() {
    this.shifting = false;
    if (this.txChar) this.onTxDone?.(this.txChar[0], this.txChar[1]);
    this.txChar = null;
    this.startShifter();
    this.checkInterrupts();
  }

  // -- receive -------------------------------------------------------------------------

  /** A character from the line whose stop bit ends at simulated `atNs` (now if past). */
  receive(value, atNs = 0) {
    const now = this.clock.nanos;
    // A character late for its line time (the emulator behind the bus) still arrives no
    // sooner than one character time after the previous one, as on a real line: a burst
    // handed over at once would overrun the 32-byte FIFO that the firmware drains in time.
    const at = Math.max(atNs, now, this.lastRxNs + this.charNanos);
    this.lastRxNs = at;
    if (atNs > 0 && at - atNs > 1000) {
      this.stats.rxLate++;
      this.stats.rxLateMaxUs = Math.max(this.stats.rxLateMaxUs, Math.round((at - atNs) / 1000));
    }
    if (at <= now && !this.pending.length) {
      this.acceptChar(value);
      return;
    }
    this.pending.push([at, value]);
    // (rp2040js leaves `scheduled` set on a fired alarm: arm on the first pending character,
    // deliverDue re-arms for the rest; they are in time order.)
    if (this.pending.length === 1) this.rxAlarm.schedule(at - now);
  }

  deliverDue() {
    const now = this.clock.nanos;
    while (this.pending.length && this.pending[0][0] <= now) this.acceptChar(this.pending.shift()[1]);
    if (this.pending.length) this.rxAlarm.schedule(this.pending[0][0] - now);
  }

  acceptChar(value) {
    // rxGate: the transceiver's receiver (RE) may be off, e.g. while DE drives the line.
    if (!this.enabled || !this.rxEnabled || (this.rxGate && !this.rxGate())) {
      this.stats.rxDropped++;
      return;
    }
    this.stats.rxChars++;
    if (this.rxFifo.length >= this.fifoDepth) {
      // The character in the shift register is lost; the FIFO keeps what it has.
      this.rsr |= 0x8;
      this.rxFifo[this.rxFifo.length - 1] |= DR_OE;
      this.interruptStatus |= INT_OE;
      this.stats.overruns++;
    } else {
      this.rxFifo.push(value & 0xff);
      if (this.rxFifo.length >= this.rxLevel()) this.interruptStatus |= INT_RX;
    }
    this.rtAlarm.schedule(RT_BITS * this.bitNanos);
    this.checkInterrupts();
  }

  rxTimeout() {
    if (this.rxFifo.length) {
      this.interruptStatus |= INT_RT;
      this.checkInterrupts();
    }
  }

  feedByte(value) {
    this.receive(value);
  }

  // -- registers -----------------------------------------------------------------------

  readUint32(offset) {
    switch (offset) {
      case DR: {
        const value = this.rxFifo.length ? this.rxFifo.shift() : 0;
        if (this.rxFifo.length < this.rxLevel()) this.interruptStatus &= ~INT_RX;
        if (!this.rxFifo.length) this.interruptStatus &= ~INT_RT;
        this.checkInterrupts();
        return value;
      }
      case RSR:
        return this.rsr;
      case FR:
        return this.flags;
      case ILPR:
        return 0;
      case IFLS:
        return this.ifls;
      case RIS:
        return this.interruptStatus;
      case MIS:
        return this.interruptStatus & this.interruptMask;
      case ICR:
        return 0;
      case DMACR:
        return this.dmacr;
    }
    if (offset >= 0xfe0 && offset <= 0xffc) return IDS[(offset - 0xfe0) >> 2];
    return super.readUint32(offset);
  }

  writeUint32(offset, value) {
    switch (offset) {
      case DR:
        if (this.txFifo.length < this.fifoDepth) {
          this.txFifo.push(value & 0xff);
          if (this.txFifo.length > this.txLevel()) this.interruptStatus &= ~INT_TX;
        }
        this.startShifter();
        this.checkInterrupts();
        return;
      case RSR:
        this.rsr = 0;
        return;
      case ILPR:
        return;
      case IFLS:
        this.ifls = value & 0x3f;
        return;
      case LCR_H:
        if ((value ^ this.lineCtrlRegister) & LCR_FEN) {
          this.txFifo.length = 0; // changing FEN flushes the FIFOs
          this.rxFifo.length = 0;
        }
        this.lineCtrlRegister = value;
        return;
      case CR:
        this.ctrlRegister = value;
        this.startShifter();
        this.checkInterrupts();
        return;
      case IMSC:
        this.interruptMask = value & 0x7ff;
        this.checkInterrupts();
        return;
      case ICR:
        this.interruptStatus &= ~value;
        this.checkInterrupts();
        return;
      case DMACR:
        this.dmacr = value & 7;
        return;
    }
    super.writeUint32(offset, value);
  }

  writeUint32Atomic(offset, value, atomicType) {
    // ICR is write-one-to-clear: an atomic set of bits clears exactly those bits.
    if (offset === ICR) {
      this.rawWriteValue = value;
      this.writeUint32(ICR, value);
      return;
    }
    super.writeUint32Atomic(offset, value, atomicType);
  }
}

/** Put a `Pl011` in place of the package's UART `index` (0 or 1); returns it. */
export function installUart(rp2040, index) {
  const old = rp2040.uart[index];
  const uart = new Pl011(rp2040, old.name, old.irq, old.dreq);
  rp2040.uart[index] = uart;
  rp2040.peripherals[index ? 0x40038 : 0x40034] = uart;
  return uart;
}
