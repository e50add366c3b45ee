"""The virtual smartPDU: RS-485 bus, group boards running the real firmware, the simulated
main meter, show scenarios and ``smartpdu run`` on top of the real service."""
