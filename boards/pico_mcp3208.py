"""Group board: Raspberry Pi Pico (RP2040) + 2 x MCP3208 + 12 WS2812 + TM1637 + 12 buttons.

GPIO map (26 usable pins; 23 used):

==========  ============================================================
GP0 / GP1   UART0 TX / RX to the MAX3485 (DI / RO; RX pulled up)
GP2         MAX3485 DE and /RE (tied): 1 = drive the bus
GP3..GP14   monitor buttons 1..12 (to ground, internal pull-ups)
GP16        MCP3208 DOUT (both chips joined)
GP18        MCP3208 CLK
GP19        MCP3208 DIN
GP20 / GP21 MCP3208 CS of ADC A (CT1..CT8) / ADC B (CT9..CT12, VREF on CH4)
GP22        WS2812 data (LED 1 first in the chain)
GP26 / GP27 TM1637 CLK / DIO
==========  ============================================================

PIO0 runs the MCP3208 program (state machine 0), PIO1 the WS2812 program (state machine 4).
"""

from protocol.consts import BUS_BAUD

UART_ID = 0
UART_TX = 0
UART_RX = 1
RS485_DE = 2
BAUD = BUS_BAUD
UART_RXBUF = 1024
UART_TXBUF = 256
BUTTON_PINS = (3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14)
ADC_DOUT = 16
ADC_SCLK = 18
ADC_DIN = 19
ADC_CS_A = 20  # ADC B's CS is ADC_CS_A + 1
ADC_SM = 0
# A ring of 4 DMA buffers of 64 instants (20 ms each, 6.5 KB): the sample task may fall 3
# blocks (60 ms) behind a busy moment before one is lost. 30 ms (4 x 32) was not enough: a
# garbage collection holds the core ~14 ms, a bus frame's handling up to ~15 ms, and the
# sample task's own block up to ~7 ms, back to back (measured on the emulated chip).
SAMPLES_PER_BLOCK = 64
ADC_RING = 4
SAMPLE_PERIOD_NS = 312_000  # = firmware.rms.SAMPLE_US: 3205.1 samples/s per channel
LED_PIN = 22
LED_COUNT = 12
LED_SM = 4
DISPLAY_CLK = 26
DISPLAY_DIO = 27
CONFIG_DIR = "/config"


def build(baud=BAUD):
    from binascii import hexlify

    import machine
    from machine import UART, Pin

    from boards import Board
    from firmware.drivers.buttons import Buttons
    from firmware.drivers.mcp3208 import Mcp3208Stream
    from firmware.drivers.rs485 import Rp2UartErrors, Rs485, RxIdleStamp, TimedTx
    from firmware.drivers.tm1637 import Display, Tm1637Wire
    from firmware.drivers.watchdog import Watchdog
    from firmware.drivers.ws2812 import PioOutput, Ws2812

    board = Board("pico_mcp3208", "group")
    board.uid = hexlify(machine.unique_id()).decode()
    board.baud = baud
    board.adc = Mcp3208Stream(
        sclk=ADC_SCLK,
        din=ADC_DIN,
        dout=ADC_DOUT,
        cs_a=ADC_CS_A,
        sm_id=ADC_SM,
        samples_per_block=SAMPLES_PER_BLOCK,
        sample_period_ns=SAMPLE_PERIOD_NS,
        depth=ADC_RING,
    )
    board.leds = Ws2812(PioOutput(LED_PIN, LED_SM), LED_COUNT)
    board.display = Display(
        Tm1637Wire(Pin(DISPLAY_CLK, Pin.OUT, value=1), Pin(DISPLAY_DIO, Pin.OPEN_DRAIN, value=1))
    )
    board.buttons = Buttons([Pin(n, Pin.IN, Pin.PULL_UP) for n in BUTTON_PINS])
    de = Pin(RS485_DE, Pin.OUT, value=0)
    uart = UART(
        UART_ID,
        baudrate=baud,
        tx=Pin(UART_TX),
        rx=Pin(UART_RX),
        txbuf=UART_TXBUF,
        rxbuf=UART_RXBUF,
        timeout=0,
        timeout_char=0,
    )
    # RO floats while the receiver is disabled (DE high): keep RX idle-high.
    Pin(UART_RX, Pin.ALT, pull=Pin.PULL_UP, alt=Pin.ALT_UART)
    board.uart = uart
    board.rs485 = Rs485(
        uart,
        de,
        baud=baud,
        ring_size=UART_RXBUF,
        line_errors=Rp2UartErrors(UART_ID),
        rx_stamp=RxIdleStamp(uart, baud, UART.IRQ_RXIDLE),
        timed_tx=_timed_tx(machine, uart, de, TimedTx),
    )
    board.wdt = Watchdog()
    board.config_dir = _config_dir()
    return board


def _timed_tx(machine, uart, de, timed_tx):
    # Slots started and ended by hardware alarms; a machine without Timer (the unix-port
    # fakes) gets the driver's sleep-and-spin path.
    timer = getattr(machine, "Timer", None)
    if timer is None:
        return None
    return timed_tx(timer(), timer(), uart, de)


def _config_dir():
    import errno
    import os

    try:
        os.mkdir(CONFIG_DIR)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    return CONFIG_DIR
