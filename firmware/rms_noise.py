"""Noise of the RMS engine (``firmware.rms``) without a commissioning step.

``fundamental``/``fund_close`` correlate each cycle with a sine and a cosine (I and Q);
``learn_noise`` learns a channel's noise from its idle windows and sets the noise every
channel subtracts. The array layouts are the engine's (restated here: see ``rms_window``).

Noise without a commissioning step
----------------------------------
The noise is estimated continuously from the channels' idle windows. The spare inputs of
ADC B (CH5..CH7, tied to mid-rail) would see the ADC's noise only, not a CT input's (burden,
bias network, wiring pick-up), and the PIO program converts 13 channels per instant: they
can only be read with the stream stopped, i.e. with a gap in the measurement. An idle CT
channel measures exactly what has to be subtracted, on that very input. Idle is decided by
what noise is not: mains-synchronous. Per cycle and channel a kernel correlates the samples
with a 64-point sine and cosine whose phase starts at the cycle start (I and Q, the DC part
removed exactly with the table's own sums); a completed window is idle when
sum over its cycles of (I^2 + Q^2) is under 3 times what noise of the window's own variance
gives (chi^2 with 20 degrees of freedom: an idle window fails once in ~10^5). A load has a
fundamental: a 0.16 A LED driver's is ~ 300 times that threshold, and even a pure sine of
~25 mA (or an LED driver of ~45 mA) fails the test, so no load in the specified range can be
learnt as noise, however long it runs. A window that passes (and whose variance is under
16 LSB^2) updates the channel's own estimate: the mean of its first 16 idle windows, then an
exponential average over 16 (3.2 s). The noise subtracted on a channel is its own estimate
shrunk towards the weighted mean of all channels' (weights = idle windows, up to 16), so a
channel that has never been idle (loaded since start-up) uses the others': same chips, same
circuit. While no channel has been idle at all, the prior (``noise_q8``, default 1/4 LSB^2:
+-1 LSB triangular noise with the quantisation) is used: a board whose 12 outputs are all
loaded from power-up on, without a single idle window, stays uncorrected (the bench's
``accuracy.max_error_pct_1_5_gauss_never_idle``). Before its first completed window, a
channel takes the sliding window of the first cycles. ``set_noise``/``calibrate_noise``
still set an estimate (as 16 idle windows); ``track_noise=False`` keeps it fixed.

"""

import math

import micropython
from micropython import const

NCT = const(12)  # CT channels
STRIDE = const(13)  # values per sample instant: 12 CTs, then the voltage reference
MAX_WINDOW = const(12)  # cycles in the longest window
_MID = const(2048)
_MAX_NOISE = const(1 << 12)  # Q8 counts^2 (16 counts^2): noise + floor < 2^13
_NW = const(16)  # idle windows a channel's own noise estimate averages (then EMA 1/16)
_IDLE_K = const(48)  # idle: fundamental power < 3 x its expectation from noise (16 * 3)
_IQ_MAX = const(8192)  # |I|, |Q| of a cycle from here on: certainly not idle
_P_SAT = const(1 << 27)  # cycle fundamental power, saturated
_TAB_A = const(64)  # amplitude of the sine table
# Signed sums are stored biased: a viper load of an array('i') word is zero-extended on a
# 64-bit port (the tests') and sign-extended on the RP2040, so stored words stay >= 0
_BIAS = const(1 << 29)
# Per-channel accumulators of the current cycle (acc) and of each ring slot
_A_S1 = const(0)
_NACC = const(4)
# Control words handed to the window kernel
_C_HEAD = const(0)  # ring slot of the cycle just closed
_C_NCYC = const(1)  # cycles in the window
_C_N = const(2)  # samples in the window
_C_NC = const(3)  # samples in the cycle just closed
_C_PUSH = const(4)  # 1: a window completed, add it to the aggregate
_C_TRACK = const(9)  # 1: estimate the noise from idle windows
_C_PRIOR = const(10)  # noise assumed while no channel has been idle, Q12 counts^2
# Fundamental (I/Q against a sine table, phase 0 at the cycle start): state words
_F_INC = const(0)  # phase step per sample, 1/65536 cycle
_F_J0 = const(1)  # index within the cycle of the first instant handed to the kernel
_F_SS = const(2)  # sum of the sine table over the cycle's instants so far
_F_SC = const(3)  # the same for the cosine
# Noise state per channel
_N_EST = const(0)  # own estimate from idle windows, Q12 counts^2
_N_W = const(1)  # idle windows in it (0.._NW)
_NNS = const(2)
_K_NOISE = const(1)
_NCAL = const(3)
_O_VAR = const(84)
_P_IQ = const(14)  # abs(I), abs(Q) of a cycle before the DC correction
_P_DC = const(15)  # DC correction product abs(sum(d)) * abs(sum(sin))


def sine_table():
    # 64 points of a sine of amplitude _TAB_A, biased by _TAB_A (bytes)
    t = bytearray(64)
    for i in range(64):
        t[i] = _TAB_A + round(_TAB_A * math.sin(2 * math.pi * i / 64))
    return t


@micropython.viper
def fundamental(buf: ptr16, pos: int, stop: int, iq: ptr32, fund: ptr32, tab: ptr8):
    # Per channel: sum(d * sin), sum(d * cos) over instants pos..stop-1 of the current cycle
    # (d = x - 2048, phase 0 at the cycle's first instant, 64-point table of amplitude 64),
    # and the sums of the sine and cosine themselves, for the DC correction.
    inc = int(fund[_F_INC])
    ph0 = int(fund[_F_J0]) * inc
    ss = int(fund[_F_SS]) - _BIAS
    sc = int(fund[_F_SC]) - _BIAS
    ph = ph0
    k = pos
    while k < stop:
        i = (ph >> 10) & 63
        ss += int(tab[i]) - _TAB_A
        sc += int(tab[(i + 16) & 63]) - _TAB_A
        ph += inc
        k += 1
    fund[_F_SS] = ss + _BIAS
    fund[_F_SC] = sc + _BIAS
    c = 0
    while c < NCT:
        si = int(iq[2 * c]) - _BIAS
        sq = int(iq[2 * c + 1]) - _BIAS
        p = pos * STRIDE + c
        end = stop * STRIDE + c
        ph = ph0
        while p < end:
            d = int(buf[p]) - _MID
            i = (ph >> 10) & 63
            si += d * (int(tab[i]) - _TAB_A)
            sq += d * (int(tab[(i + 16) & 63]) - _TAB_A)
            ph += inc
            p += STRIDE
        iq[2 * c] = si + _BIAS
        iq[2 * c + 1] = sq + _BIAS
        c += 1


@micropython.viper
def fund_close(iq: ptr32, fund: ptr32, pring: ptr32, ctl: ptr32, acc: ptr32, work: ptr32):
    # Power of the cycle's fundamental per channel, I^2 + Q^2 with the channel's DC removed
    # (sum(d) * sum(table) / n), saturated at _P_SAT, into the ring slot of the cycle.
    head = int(ctl[_C_HEAD])
    nc = int(ctl[_C_NC])
    ss = int(fund[_F_SS]) - _BIAS
    sc = int(fund[_F_SC]) - _BIAS
    ass = ss if ss >= 0 else 0 - ss
    asc = sc if sc >= 0 else 0 - sc
    if asc > ass:
        ass = asc
    c = 0
    while c < NCT:
        sd = int(acc[c * _NACC + _A_S1]) - _MID * nc
        i = int(iq[2 * c]) - _BIAS
        q = int(iq[2 * c + 1]) - _BIAS
        iq[2 * c] = _BIAS
        iq[2 * c + 1] = _BIAS
        m = i if i >= 0 else 0 - i
        if (q if q >= 0 else 0 - q) > m:
            m = q if q >= 0 else 0 - q
        if (m >> 15) > work[_P_IQ]:
            work[_P_IQ] = m >> 15
        m = (sd if sd >= 0 else 0 - sd) * ass
        if (m >> 15) > work[_P_DC]:
            work[_P_DC] = m >> 15
        i -= (sd * ss) // nc
        q -= (sd * sc) // nc
        if i >= _IQ_MAX or q >= _IQ_MAX or i <= 0 - _IQ_MAX or q <= 0 - _IQ_MAX:
            pw = _P_SAT
        else:
            pw = i * i + q * q
        pring[head * NCT + c] = pw
        c += 1
    fund[_F_SS] = _BIAS
    fund[_F_SC] = _BIAS


@micropython.viper
def learn_noise(pring: ptr32, ctl: ptr32, cal: ptr32, out: ptr32, nst: ptr32):
    # After a cycle: learn the noise from idle completed windows; set the noise to subtract.
    head = int(ctl[_C_HEAD])
    ncyc = int(ctl[_C_NCYC])
    n = int(ctl[_C_N])
    push = int(ctl[_C_PUSH])
    if not int(ctl[_C_TRACK]):
        return
    learned = 0
    c = 0
    while c < NCT:
        # A completed window whose fundamental is no stronger than noise makes it. Until
        # the first completed one, the sliding window stands in (replaced each cycle)
        if push or int(nst[c * _NNS + _N_W]) <= 1:
            var = int(out[_O_VAR + c])
            if var < _MAX_NOISE:
                pw = 0
                slot = head
                i = 0
                while i < ncyc:
                    pw += int(pring[slot * NCT + c])
                    slot = slot - 1 if slot else MAX_WINDOW - 1
                    i += 1
                if pw < _IDLE_K * var * n:
                    k = c * _NNS
                    w = int(nst[k + _N_W]) + 1
                    if w > _NW:
                        w = _NW
                    if not push:
                        w = 1
                    est = int(nst[k + _N_EST])
                    if var * 16 >= est:
                        nst[k + _N_EST] = est + (var * 16 - est) // w
                    else:
                        nst[k + _N_EST] = est - (est - var * 16) // w
                    nst[k + _N_W] = w
                    learned = 1
        c += 1

    # Noise to subtract per channel: its own estimate, shrunk towards the weighted mean of
    # all channels' estimates (the prior while no channel has been idle) by its idle windows
    if push or learned:
        tw = 0
        te = 0
        c = 0
        while c < NCT:
            w = int(nst[c * _NNS + _N_W])
            tw += w
            te += int(nst[c * _NNS + _N_EST]) * w
            c += 1
        pool = int(ctl[_C_PRIOR])
        if tw:
            pool = te // tw
        c = 0
        while c < NCT:
            w = int(nst[c * _NNS + _N_W])
            v = (int(nst[c * _NNS + _N_EST]) * w + pool * (_NW - w)) // _NW
            v = (v + 8) >> 4
            if v >= _MAX_NOISE:
                v = _MAX_NOISE - 1
            if v < 0:
                v = 0
            cal[c * _NCAL + _K_NOISE] = v
            c += 1
