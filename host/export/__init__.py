"""Exports to the systems a site already runs (MQTT / Home Assistant, Prometheus); all
read-only (R7): nothing here can switch power."""
