// The flash chip's unique ID (command 0x4B), which MicroPython returns as machine.unique_id().
//
// Why: the group board's bus identity (discovery UID) is its flash's unique ID. rp2040js's
// SSI answers every command with 0 and IO_QSPI (where the SDK forces the flash CS) is not
// implemented, so every emulated board would be 0000000000000000 and several boards on one
// bus could not be told apart. The pico-sdk reads the ID at start-up with flash_do_cmd():
// CS forced low through IO_QSPI GPIO_QSPI_SS_CTRL.OUTOVER, 13 bytes through SSI DR0
// (0x4B, 4 dummy bytes, 8 ID bytes), CS forced high. This models exactly that exchange:
// byte-for-byte answers while CS is forced low, the W25Q16's "busy = 0" status otherwise.

const IO_QSPI = 0x40018;
const SS_CTRL = 0x0c;
const SSI = 0x18000;
const DR0 = 0x60;
const OUTOVER_SHIFT = 8;
const OUTOVER_LOW = 2;

export function installFlashId(mcu, uid) {
  if (!(uid instanceof Uint8Array) || uid.length !== 8) throw new Error('flash unique id must be 8 bytes');
  const ssi = mcu.peripherals[SSI];
  let ssCtrl = 0;
  let index = -1; // byte index within the current CS-low transaction, -1 = CS not forced low
  let command = 0;
  let answer = 0;
  const qspi = mcu.peripherals[IO_QSPI];
  const qspiRead = qspi.readUint32.bind(qspi);
  const qspiWrite = qspi.writeUint32.bind(qspi);
  qspi.readUint32 = (offset) => (offset === SS_CTRL ? ssCtrl : offset === 0x08 ? 0 : qspiRead(offset));
  qspi.writeUint32 = (offset, value) => {
    if (offset !== SS_CTRL) {
      qspiWrite(offset, value);
      return;
    }
    ssCtrl = value;
    index = ((value >> OUTOVER_SHIFT) & 3) === OUTOVER_LOW ? 0 : -1;
  };
  const ssiRead = ssi.readUint32.bind(ssi);
  const ssiWrite = ssi.writeUint32.bind(ssi);
  ssi.writeUint32 = (offset, value) => {
    if (offset === DR0 && index >= 0) {
      if (index === 0) command = value & 0xff;
      answer = command === 0x4b && index >= 5 && index < 13 ? uid[index - 5] : 0;
      index++;
      return;
    }
    ssiWrite(offset, value);
  };
  ssi.readUint32 = (offset) => (offset === DR0 && index >= 0 ? answer : ssiRead(offset));
}

/** 8 bytes from a hex string of up to 16 digits (left-padded with zeros). */
export function uidFromHex(hex) {
  if (!/^[0-9a-fA-F]{1,16}$/.test(hex)) throw new Error(`--uid must be 1..16 hex digits, not ${hex}`);
  return Uint8Array.from(Buffer.from(hex.padStart(16, '0'), 'hex'));
}
