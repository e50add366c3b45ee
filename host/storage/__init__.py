"""Persistence on the Pi: SQLite in WAL mode, one writer thread, schema migrations.

What is kept, and where:

* ``settings``: the unit's name, channel labels, supervision ranges, the numbering of the
  units in detection order, each committed with ``synchronous=FULL`` (fsynced: survives
  kill -9 and a power cut);
* ``events``: the event log, with a "black box" (``blackbox``: the last 30 s of every
  channel and the meter) saved with every trip, committed like settings;
* ``history``: 1 s samples for the last hour, 1 min min/avg/max for 30 days, written in
  batches with ``synchronous=NORMAL`` and fsynced every few seconds; ``retention``
  aggregates, prunes and bounds the file's size.

``database`` owns the two connections and their threads, ``schema`` the migrations,
``store.Storage`` is the one object the service uses, ``recorder.Recorder`` wires the unit
state to it.
"""
