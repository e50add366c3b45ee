"""Reported value of the RMS engine (``firmware.rms``): load steps and the steady reading.

``choose_report`` decides per channel and cycle between the steady reading and the 200 ms
window; ``steady`` extends the 3 s aggregate of a small steady current. The array layouts
are the engine's (restated here: see ``rms_window``).

Reported value
--------------
``report_ua`` is the reading to display and report: the 3 s aggregate while the load is
steady, the 200 ms window after a load step until the aggregate has caught up (within the
window's random error and 1/256 of it, or once every window of the aggregate closed after the
step: a 2 -> 10 A step stays within 1 % from 10 cycles on, where "within 1/32" left the
reading 3 % low for most of 3 s), 0 when the window reads 0. For the
first cycles after a step, while the window still mixes in the old level, the RMS of the
cycles closed since the step was seen alone (``_R_SHORT``, from ``rms_window``) is reported
instead when it differs from the window by more than its own random error (4 sigma over its
samples) and 1/32: a step shows a cycle after it (20 ms), not after 9-10 cycles; noise and a
flickering load keep the window's steadier value. A step is
the window leaving the band of window values seen since the previous step by more than
1/32 of the aggregate: per cycle the extremes of the sliding window values are kept per
aggregation slot, and the band spans the last (up to 15) completed slots from the second
after the step on (the first ones still mix in the old level). A steady flickering load (an
LED wall at 8 Hz moves the 200 ms window by +-5 %) stays inside its own band, so the
reading does not jump between aggregate and window; a steady load's band is its noise
(+-0.2 % at 0.8 A), so a step shows as fast as with a fixed 3 % threshold. Until a band
exists (start-up, just after a step) the window is compared with the aggregate (3 %).


Steady reading
--------------
With noise of sigma LSB rms, an RMS estimate over N samples has a random error of
sigma / sqrt(N) counts whatever the estimator (the noise's cross term with the signal): with
1 LSB that is 0.011 counts over 3 s, 0.5 % (1 sigma) of 0.16 A and 0.1 % of 0.8 A. So the
reading of a small steady current (3 s aggregate under ``_LONG_MAX``, 4.8 A) averages longer:
every completed 3 s aggregation block (15 windows) is kept, and the reading (``avg_ua``, and
``report_ua`` while steady) is the quadratic mean of the windows of the current block and the
last up to ``_NBLK`` (8) completed blocks, i.e. up to 27 s (0.18 % at 0.16 A). The extension
is dropped (back to the 3 s aggregate; only blocks whose 15 windows all came later count)
whenever the 3 s aggregate differs from it by more than 4 sigma of its own random error,
sigma * sqrt(1 / N): so the steady reading never strays from the 3 s aggregate by more than
that, a load step drops it within a window or two (while ``report_ua`` shows the window),
and a change too small for the step detection still drops it. The band's step detection does
not drop it: on 0.16 A its noise makes a "step" every two minutes or so. Step detection, the
200 ms window and the cycle values (the overload classifier's) are not affected.

32-bit bounds: a block's sum of 15 window values (RMS * 2^9)^2 is < 2^44 (two limbs, hi
< 2^30); a block enters the extension only when its hi < 2^22, and the current block is part
of a 3 s aggregate under 2^15 (hi < 2^20), so the sum of 8 blocks and the current one has
hi < 2^26; the tolerance term noise * 2^14 < 2^26.
"""

import micropython
from micropython import const

from firmware.rms_window import isqrt

NCT = const(12)  # CT channels
AGG_WINDOWS = const(15)  # windows in the 3 s aggregate
_LB = const(14)  # limb width of two-limb numbers: value = hi << 14 | lo
_LM = const(0x3FFF)
_BAND0 = const(4)  # _R_BAND is stored + 4
_C_NCYC = const(1)  # cycles in the window
_C_N = const(2)  # samples in the window
_C_NC = const(3)  # samples in the cycle just closed
_C_PUSH = const(4)  # 1: a window completed, add it to the aggregate
_C_AHEAD = const(5)  # aggregate slot to fill
_C_BDONE = const(11)  # 1: the window completed an aggregation block
_C_BHEAD = const(12)  # block ring slot of the last completed block
_NCTL = const(13)
# Reported-value state per channel (Q9 counts)
_R_AGG = const(0)  # 3 s aggregate
_R_LO = const(1)  # band of the window values since the last step (< 3 s)
_R_HI = const(2)
_R_CLO = const(3)  # extremes of the window values since the last completed window
_R_CHI = const(4)
_R_STEP = const(5)  # 1: a load step, the window is reported
_R_BAND = const(6)  # completed windows in the band (< 1: none yet)
_R_W = const(7)  # the window value of the cycle just closed
_R_LONG = const(8)  # the steady reading (3 s aggregate, extended while steady)
_R_NB = const(9)  # completed blocks in it (0: the 3 s aggregate)
_R_POST = const(10)  # completed windows since the steady reading restarted
_R_SINCE = const(11)  # cycles closed since the last step was seen (saturates at MAX_WINDOW)
_R_SHORT = const(12)  # RMS of those cycles alone, while fewer than the window's
_NRS = const(13)
_EMPTY = const(0x3FFFFFFF)
# Calibration words per channel
_K_GAIN = const(0)
_K_NOISE = const(1)
_NCAL = const(3)
_O_AVG = const(12)
_O_REPORT = const(96)
_NBLK = const(8)  # completed 3 s blocks a steady reading extends over
_LONG_MAX = const(1 << 15)  # Q9 counts (64, 4.8 A): above, the 3 s aggregate
_BLK_MAX_HI = const(1 << 22)  # a block with a larger high limb is not kept
_POST_MAX = const(255)


@micropython.viper
def steady(agg: ptr32, blk: ptr32, ctl: ptr32, cal: ptr32, out: ptr32, rst: ptr32, work: ptr32):
    # After a completed window: the steady reading per channel, the 3 s aggregate extended
    # by the completed blocks since the last step while it agrees with them (see above).
    n = int(ctl[_C_N])
    ahead = int(ctl[_C_AHEAD])
    bdone = int(ctl[_C_BDONE])
    bhead = int(ctl[_C_BHEAD])
    c = 0
    while c < NCT:
        r = c * _NRS
        a = int(rst[r + _R_AGG])
        post = int(rst[r + _R_POST]) + 1
        if post > _POST_MAX:
            post = _POST_MAX
        nb = int(rst[r + _R_NB])
        if a >= _LONG_MAX:
            nb = 0
            post = 0
        # The current block: aggregate slots 0..ahead
        hi = 0
        lo = 0
        i = 0
        while i <= ahead:
            e = (i * NCT + c) * 2
            hi += int(agg[e])
            lo += int(agg[e + 1])
            i += 1
        hi += lo >> _LB
        lo &= _LM
        count = ahead + 1
        if bdone:  # it is complete: keep it; it counts if all its windows followed the step
            e = (bhead * NCT + c) * 2
            blk[e] = hi
            blk[e + 1] = lo
            if post > AGG_WINDOWS and hi < _BLK_MAX_HI and a < _LONG_MAX:
                nb += 1
                if nb > _NBLK:
                    nb = _NBLK
            else:
                nb = 0
            hi = 0
            lo = 0
            count = 0
        rst[r + _R_NB] = nb
        rst[r + _R_POST] = post
        v = a
        if nb:
            slot = bhead
            i = 0
            while i < nb:
                e = (slot * NCT + c) * 2
                hi += int(blk[e])
                lo += int(blk[e + 1])
                slot = slot - 1 if slot else _NBLK - 1
                i += 1
            count += nb * AGG_WINDOWS
            hi += lo >> _LB
            lo &= _LM
            qh = hi // count
            lo = (((hi - qh * count) << _LB) + lo) // count
            qh += lo >> _LB
            lo &= _LM
            v = int(isqrt(qh, lo, work))
            # Not steady (the 3 s aggregate moved by more than 4 sigma): start afresh
            t = (int(cal[c * _NCAL + _K_NOISE]) << 14) // (AGG_WINDOWS * n)
            tol = int(isqrt(t >> _LB, t & _LM, work)) + 1
            if (v - a if v > a else a - v) > tol:
                rst[r + _R_NB] = 0
                rst[r + _R_POST] = 0
                v = a
        rst[r + _R_LONG] = v
        gain = int(cal[c * _NCAL + _K_GAIN])
        out[_O_AVG + c] = (v >> 9) * gain + (((v & 511) * gain + 256) >> 9)
        c += 1


@micropython.viper
def choose_report(ctl: ptr32, cal: ptr32, out: ptr32, rst: ptr32, ext: ptr32, work: ptr32):
    # After a cycle: the steady reading unless the window has left the band of the window
    # values since the last step (or, before there is one, the 3 s aggregate) by 1/32
    push = int(ctl[_C_PUSH])
    ahead = int(ctl[_C_AHEAD])
    ncyc = int(ctl[_C_NCYC])
    nc = int(ctl[_C_NC])
    c = 0
    while c < NCT:
        r = c * _NRS
        wv = int(rst[r + _R_W])
        a = int(rst[r + _R_AGG])
        if push:
            e = (ahead * NCT + c) * 2
            lo = int(rst[r + _R_CLO])
            hi = int(rst[r + _R_CHI])
            ext[e] = wv if wv < lo else lo
            ext[e + 1] = wv if wv > hi else hi
            rst[r + _R_CLO] = _EMPTY
            rst[r + _R_CHI] = 0
            bc = int(rst[r + _R_BAND]) - _BAND0 + 1
            if bc > AGG_WINDOWS:
                bc = AGG_WINDOWS
            rst[r + _R_BAND] = bc + _BAND0
            if bc >= 1:
                lo = _EMPTY
                hi = 0
                slot = ahead
                i = 0
                while i < bc:
                    e = (slot * NCT + c) * 2
                    if int(ext[e]) < lo:
                        lo = int(ext[e])
                    if int(ext[e + 1]) > hi:
                        hi = int(ext[e + 1])
                    slot = slot - 1 if slot else AGG_WINDOWS - 1
                    i += 1
                rst[r + _R_LO] = lo
                rst[r + _R_HI] = hi
        else:
            if wv < int(rst[r + _R_CLO]):
                rst[r + _R_CLO] = wv
            if wv > int(rst[r + _R_CHI]):
                rst[r + _R_CHI] = wv
        m = a >> 5
        step = int(rst[r + _R_STEP])
        bc = int(rst[r + _R_BAND]) - _BAND0
        d = wv - a if wv > a else a - wv
        trigger = 0
        if a == 0:
            trigger = 1
        elif bc >= 1:
            if wv > int(rst[r + _R_HI]) + m or wv + m < int(rst[r + _R_LO]):
                trigger = 1
        elif not step and d > m:
            trigger = 1
        if trigger:
            step = 1
            if a == 0 or bc >= 1:  # the band restarts with the second window after this
                rst[r + _R_BAND] = _BAND0 - 2
            rst[r + _R_SINCE] = 0
        elif step and bc >= AGG_WINDOWS - 1:
            step = 0  # every window of the aggregate closed after the step
        elif step and d <= m:
            # Back to the steady reading once the aggregate has caught up with the window
            # to within the window's own random error (4 sigma) and 1/256: within 1/32 it
            # could still be 3 % off and take the rest of its 3 s to creep up
            t = (int(cal[c * _NCAL + _K_NOISE]) << 14) // int(ctl[_C_N])
            tol = int(isqrt(t >> _LB, t & _LM, work)) + 1
            if tol < (a >> 8):
                tol = a >> 8
            if d <= tol:
                step = 0
        rst[r + _R_STEP] = step
        v = wv if step else int(rst[r + _R_LONG])
        if wv == 0:
            v = 0
        # Just after a step the window still mixes in the old level: the cycles since the
        # step alone, when they differ from it by more than their own random error (4 sigma)
        # and 1/32, so noise and a flickering load keep the window's steadier value
        since = int(rst[r + _R_SINCE])
        if step and since >= 1 and since < ncyc:
            s = int(rst[r + _R_SHORT])
            t = (int(cal[c * _NCAL + _K_NOISE]) << 14) // (since * nc)
            tol = int(isqrt(t >> _LB, t & _LM, work)) + 1
            if tol < (wv >> 5):
                tol = wv >> 5
            if (s - wv if s > wv else wv - s) > tol:
                v = s
        gain = int(cal[c * _NCAL + _K_GAIN])
        out[_O_REPORT + c] = (v >> 9) * gain + (((v & 511) * gain + 256) >> 9)
        c += 1
