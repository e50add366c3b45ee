"""Field tools for a technician at the unit: flash, serial console, bus monitor, the USB
board stand-in they are tested against, and the protocol demo."""
