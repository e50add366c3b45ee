"""Mains status node: Raspberry Pi Pico reading the main breaker, E-stop and Neutral relay.

GPIO map:

==========  ============================================================
GP0 / GP1   UART0 TX / RX to the MAX3485 (RX pulled up)
GP2         MAX3485 DE and /RE (tied)
GP10        main breaker auxiliary contact (opto-coupler, active low = closed)
GP11        main breaker alarm / trip contact (active low = tripped)
GP12        Emergency Stop contact (active low = pressed)
GP13        loss-of-Neutral relay contact (active low = Neutral lost)
ADC4        RP2040 internal temperature sensor
==========  ============================================================
"""

from protocol.consts import BUS_BAUD

UART_ID = 0
UART_TX = 0
UART_RX = 1
RS485_DE = 2
BAUD = BUS_BAUD
UART_RXBUF = 1024
UART_TXBUF = 256
STATUS_PINS = (10, 11, 12, 13)  # breaker, alarm, estop, neutral (status_inputs order)
DEBOUNCE_MS = 30
CONFIG_DIR = "/config"


def build(baud=BAUD):
    import errno
    import os
    from binascii import hexlify

    import machine
    from machine import UART, Pin

    from boards import Board
    from firmware.drivers.rs485 import Rp2UartErrors, Rs485, RxIdleStamp
    from firmware.drivers.status_inputs import Rp2Temperature, StatusInputs
    from firmware.drivers.watchdog import Watchdog

    board = Board("mains_status", "mains")
    board.uid = hexlify(machine.unique_id()).decode()
    board.baud = baud
    board.status = StatusInputs(
        [Pin(n, Pin.IN, Pin.PULL_UP) for n in STATUS_PINS], debounce_ms=DEBOUNCE_MS
    )
    board.temperature = Rp2Temperature()
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
    Pin(UART_RX, Pin.ALT, pull=Pin.PULL_UP, alt=Pin.ALT_UART)
    board.uart = uart
    board.rs485 = Rs485(
        uart,
        de,
        baud=baud,
        ring_size=UART_RXBUF,
        line_errors=Rp2UartErrors(UART_ID),
        rx_stamp=RxIdleStamp(uart, baud, UART.IRQ_RXIDLE),
    )
    board.wdt = Watchdog()
    try:
        os.mkdir(CONFIG_DIR)
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    board.config_dir = CONFIG_DIR
    return board
