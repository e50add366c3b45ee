"""Read-only analyses of a unit's measurements: phase-balance advice (``balance``) and the
show energy report (``energy``). Nothing here switches anything (R7)."""
