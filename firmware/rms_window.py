"""Window statistics of the RMS engine (``firmware.rms``): the viper kernels of one cycle.

``scan_ref`` finds the end of a mains cycle on the voltage reference, ``accumulate`` keeps the
per-cycle sums of every channel, ``close_window`` closes a cycle into the ring and evaluates
the sliding 10/12-cycle window, the cycle just closed and the 3 s aggregate (``rms_q9``: the
exact variance less the noise, 0 under the gate; ``isqrt``: rounded two-limb square root).
The array layouts are the engine's; a ``const`` is only seen by the module that defines it,
so each module restates the words it uses (``tests/firmware/test_rms.py`` checks they agree).

32-bit proof
------------
On the RP2040 a viper ``int`` has 32 bits and a Python small int 31 bits, so nothing on the
per-cycle path may reach 2^31 inside viper code or 2^30 where Python sees it. With
d = x - 2048 in [-2048, 2047], at most ``MAX_CYCLE`` = 80 samples per cycle and
``MAX_WINDOW`` * 80 = 960 per window:

==============================  ======================  =====================================
quantity                        bound                   held as
==============================  ======================  =====================================
cycle sum(x)                    80 * 4095 < 2^19        one word
cycle sum(d^2)                  80 * 2^22 < 2^28.4      one word
window sum(x), abs(sum(d))      < 2^22, < 2^21          one word
window sum(d^2)                 960 * 2^22 < 2^32       two limbs of 14 bits (hi < 2^18)
cycles since a step (< window)  the window's bounds      the same (fewer cycles)
n * sum(d^2), sum(d)^2, V       < 2^42                  two limbs (hi < 2^28)
isqrt(V), its remainder * 4     < 2^21, < 2^24          one word, digit by digit
window RMS in counts * 2^9      < 2^20 (root * 2^9 < 2^30)
3 s sum of 15 (RMS * 2^9)^2     < 2^44                  two limbs (hi < 2^30)
peak * 3200 (crest factor)      < 2^28                  one word
cycle I, Q: sum(d * table)      80 * 2^11 * 64 < 2^24   one word (stored + 2^29)
DC term abs(sum(d)) * sum(tab)  2^17.4 * 2^12.4 < 2^30  one word
cycle I^2 + Q^2                 < 2^27 (saturated)      one word; window sum < 2^31
idle test 48 * var * n          48 * 2^12 * 960 < 2^28  one word
noise estimates * weights       12 * 2^16 * 16 < 2^24   one word
outputs in uA                   < 2^29                  Python-visible
==============================  ======================  =====================================

Products are formed only between limbs small enough for their product to stay below 2^31.
``probe`` records the largest value of every such intermediate (shifted right by 15, so a
value below 2^31 shows as below 2^16); ``tests/firmware/test_rms.py`` drives full-scale
worst-case input through the engine and checks the probe and every array against those
limits. Nothing on the path uses floats or allocates. Words the kernels store and load
again are kept >= 0 (signed sums biased): a viper load of an ``array('i')`` word is
"""

import micropython
from micropython import const

NCT = const(12)  # CT channels
STRIDE = const(13)  # values per sample instant: 12 CTs, then the voltage reference
VREF = const(12)  # index of the voltage reference within an instant
MIN_CYCLE = const(40)  # samples; shorter cycles (> 80 Hz) are noise
MAX_WINDOW = const(12)  # cycles in the longest window
AGG_WINDOWS = const(15)  # windows in the 3 s aggregate
ADC_MAX = const(4095)
_MID = const(2048)
_LB = const(14)  # limb width of two-limb numbers: value = hi << 14 | lo
_LM = const(0x3FFF)
_MAX_NOISE = const(1 << 12)  # Q8 counts^2 (16 counts^2): noise + floor < 2^13
_GATE_K2 = const(4718592)  # (6 sigma)^2 * 2 * 256^2: the gate's margin, Q8, times n
_OFF_SPAN = const(2048)  # offset clamp, Q4 counts (+-128 counts around mid-rail)
# Scan state (array 'i')
_S_ARMED = const(0)
_S_MID = const(1)  # zero level of the reference, counts
_S_HYST = const(2)
_S_COUNT = const(3)  # samples in the current cycle so far
_S_LIMIT = const(4)  # cycle ends by force at this many samples
_S_PREV = const(5)  # reference sample before the crossing
_S_HIT = const(6)  # 0: no boundary, 1: crossing, 2: forced
_S_V = const(7)  # reference sample at the crossing
_HIT_CROSSING = const(1)
_HIT_FORCED = const(2)
# Per-channel accumulators of the current cycle (acc) and of each ring slot
_A_S1 = const(0)
_A_S2 = const(1)
_A_MAX = const(2)
_A_MIN = const(3)
_NACC = const(4)
# Control words handed to the window kernel
_C_HEAD = const(0)  # ring slot of the cycle just closed
_C_NCYC = const(1)  # cycles in the window
_C_N = const(2)  # samples in the window
_C_NC = const(3)  # samples in the cycle just closed
_C_PUSH = const(4)  # 1: a window completed, add it to the aggregate
_C_AHEAD = const(5)  # aggregate slot to fill
_C_ACOUNT = const(6)  # aggregate slots in use
_C_WGATE = const(7)  # gate margin per unit of noise for the window, Q8 (6 sigma)
_C_CGATE = const(8)  # the same for the cycle
# Reported-value state per channel (Q9 counts)
_R_AGG = const(0)  # 3 s aggregate
_R_W = const(7)  # the window value of the cycle just closed
_R_LONG = const(8)  # the steady reading (3 s aggregate, extended while steady)
_R_NB = const(9)  # completed blocks in it (0: the 3 s aggregate)
_R_POST = const(10)  # completed windows since the last step (saturates)
_R_SINCE = const(11)  # cycles closed since the last step was seen (saturates at MAX_WINDOW)
_R_SHORT = const(12)  # RMS of those cycles alone, while fewer than the window's
_NRS = const(13)
_RING_LEN = const(576)  # ring words after the per-channel slots: samples per cycle, by slot
# Calibration words per channel
_K_GAIN = const(0)
_K_NOISE = const(1)
_K_FLOOR = const(2)
_NCAL = const(3)
# Output blocks of NCT words each
_O_RMS = const(0)
_O_AVG = const(12)
_O_CYCLE = const(24)
_O_PEAK = const(36)
_O_CREST = const(48)
_O_CLIP = const(60)
_O_OFFSET = const(72)
_O_VAR = const(84)
# Probe slots: running maximum of (intermediate >> 15)
_P_S1 = const(0)  # window sum(x)
_P_S2_HI = const(1)  # window sum(d^2), high limb before carry
_P_S2_LO = const(2)  # window sum(d^2), low limb before carry
_P_NS2 = const(3)  # n * high limb
_P_NS2_LO = const(4)  # n * low limb
_P_SD_SQ = const(5)  # square of the low limb of abs(sum(d))
_P_SD_SQ_HI = const(6)  # high limb of sum(d)^2
_P_V_HI = const(7)  # high limb of the variance numerator V
_P_NOISE = const(8)  # n * (noise + floor), and its product with n
_P_ROOT9 = const(9)  # isqrt(V) << 9
_P_AGG_HI = const(10)  # high limb of the aggregate sum
_P_ISQRT = const(11)  # isqrt remainder << 2
_P_UA = const(12)  # largest uA product
_P_CREST = const(13)  # peak * 3200
_W_VH = const(16)  # scratch after the probe slots: V of the last _rms_q9
_W_VL = const(17)


@micropython.viper
def scan_ref(buf: ptr16, pos: int, stop: int, scan: ptr32) -> int:
    # Walk the reference channel to the end of the current cycle or of the block.
    armed = scan[_S_ARMED]
    mid = scan[_S_MID]
    low = mid - scan[_S_HYST]
    count = scan[_S_COUNT] - pos
    end = pos + scan[_S_LIMIT] - scan[_S_COUNT]  # where the cycle ends by force
    if end > stop:
        end = stop
    prev = scan[_S_PREV]
    hit = 0
    p = pos * STRIDE + VREF
    while pos < end:
        v = int(buf[p])
        if v < low:
            armed = 1
        elif armed and v >= mid:
            armed = 0  # a crossing sooner than MIN_CYCLE is noise: wait for the next
            if count + pos >= MIN_CYCLE:
                hit = _HIT_CROSSING
                scan[_S_V] = v
                break
        prev = v
        pos += 1
        p += STRIDE
    count += pos
    if not hit and count >= scan[_S_LIMIT]:
        hit = _HIT_FORCED
    scan[_S_ARMED] = armed
    scan[_S_COUNT] = count
    scan[_S_PREV] = prev
    scan[_S_HIT] = hit
    return pos


@micropython.viper
def accumulate(buf: ptr16, pos: int, stop: int, acc: ptr32):
    # Per channel: sum(x), sum((x - 2048)^2), max, min over instants pos..stop-1.
    c = 0
    while c < STRIDE:
        a = c * _NACC
        s1 = acc[a + _A_S1]
        s2 = acc[a + _A_S2]
        top = acc[a + _A_MAX]
        bottom = acc[a + _A_MIN]
        p = pos * STRIDE + c
        end = stop * STRIDE + c
        while p < end:
            x = int(buf[p])
            s1 += x
            d = x - _MID
            s2 += d * d
            if x > top:
                top = x
            if x < bottom:
                bottom = x
            p += STRIDE
        acc[a + _A_S1] = s1
        acc[a + _A_S2] = s2
        acc[a + _A_MAX] = top
        acc[a + _A_MIN] = bottom
        c += 1


@micropython.viper
def isqrt(hi: int, lo: int, work: ptr32) -> int:
    # Rounded square root of hi << 14 | lo (hi < 2^30), two bits at a time.
    root = 0
    rem = 0
    shift = 28
    while shift >= 0:
        rem = (rem << 2) | ((hi >> shift) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if rem >= trial:
            rem -= trial
            root |= 1
        shift -= 2
    shift = 12
    while shift >= 0:
        rem = (rem << 2) | ((lo >> shift) & 3)
        trial = (root << 2) | 1
        root <<= 1
        if rem >= trial:
            rem -= trial
            root |= 1
        shift -= 2
    if (rem >> 13) > work[_P_ISQRT]:
        work[_P_ISQRT] = rem >> 13  # rem << 2 >> 15
    if rem > root:
        root += 1
    return root


@micropython.viper
def close_window(
    acc: ptr32, ring: ptr32, ctl: ptr32, cal: ptr32, out: ptr32, agg: ptr32, work: ptr32, rst: ptr32
):
    # Close the cycle in acc into the ring and evaluate window, cycle and aggregate.
    head = ctl[_C_HEAD]
    ncyc = ctl[_C_NCYC]
    n = ctl[_C_N]
    nc = ctl[_C_NC]
    push = ctl[_C_PUSH]
    ahead = ctl[_C_AHEAD]
    acount = ctl[_C_ACOUNT]
    wgate = ctl[_C_WGATE]
    cgate = ctl[_C_CGATE]
    c = 0
    while c < NCT:
        a = c * _NACC
        r = (head * NCT + c) * _NACC
        cs1 = acc[a + _A_S1]
        cs2 = acc[a + _A_S2]
        ring[r + _A_S1] = cs1
        ring[r + _A_S2] = cs2
        ring[r + _A_MAX] = acc[a + _A_MAX]
        ring[r + _A_MIN] = acc[a + _A_MIN]
        ring[_RING_LEN + head] = nc
        acc[a + _A_S1] = 0
        acc[a + _A_S2] = 0
        acc[a + _A_MAX] = 0
        acc[a + _A_MIN] = ADC_MAX
        k = c * _NCAL
        gain = cal[k + _K_GAIN]
        noise = cal[k + _K_NOISE]
        floor = cal[k + _K_FLOOR]
        # The gate's margin over the noise: the floor, or 6 sigma of the variance estimate
        wfloor = (noise * wgate) >> 8
        if wfloor < floor:
            wfloor = floor
        if wfloor >= _MAX_NOISE:
            wfloor = _MAX_NOISE - 1
        cfloor = (noise * cgate) >> 8
        if cfloor < floor:
            cfloor = floor
        if cfloor >= _MAX_NOISE:
            cfloor = _MAX_NOISE - 1

        # Window sums; sum(d^2) as two limbs
        s1 = 0
        hi = 0
        lo = 0
        top = 0
        bottom = ADC_MAX
        slot = head
        i = 0
        while i < ncyc:
            r = (slot * NCT + c) * _NACC
            s1 += ring[r + _A_S1]
            s2 = ring[r + _A_S2]
            hi += s2 >> _LB
            lo += s2 & _LM
            if ring[r + _A_MAX] > top:
                top = ring[r + _A_MAX]
            if ring[r + _A_MIN] < bottom:
                bottom = ring[r + _A_MIN]
            slot = slot - 1 if slot else MAX_WINDOW - 1
            i += 1
        if (s1 >> 15) > work[_P_S1]:
            work[_P_S1] = s1 >> 15
        if (hi >> 15) > work[_P_S2_HI]:
            work[_P_S2_HI] = hi >> 15
        if (lo >> 15) > work[_P_S2_LO]:
            work[_P_S2_LO] = lo >> 15
        sd = s1 - _MID * n
        rq9 = int(_rms_q9(n, s1, hi, lo, noise, wfloor, work))
        rst[c * _NRS + _R_W] = rq9
        ua = (rq9 >> 9) * gain
        if (ua >> 15) > work[_P_UA]:
            work[_P_UA] = ua >> 15
        out[_O_RMS + c] = ua + (((rq9 & 511) * gain + 256) >> 9)

        # Raw variance (Q8) for noise calibration, when small enough to matter
        var = 0x3FFFFFFF
        vh = work[_W_VH]
        if vh < 0x10000:
            v = (vh << _LB) | work[_W_VL]
            q = v // n
            if q < 0x400000:
                var = ((q << 8) + (((v - q * n) << 8) // n)) // n
        out[_O_VAR + c] = var

        # DC offset (Q4, clamped) from the window mean; peak and crest factor around it
        o = (sd * 16 + (n >> 1)) // n
        if o > _OFF_SPAN:
            o = _OFF_SPAN
        elif o < 0 - _OFF_SPAN:
            o = 0 - _OFF_SPAN
        level = (_MID << 4) + o
        out[_O_OFFSET + c] = level
        pk = (top << 4) - level
        if level - (bottom << 4) > pk:
            pk = level - (bottom << 4)
        if pk < 0:
            pk = 0
        ua = (pk >> 4) * gain
        if (ua >> 15) > work[_P_UA]:
            work[_P_UA] = ua >> 15
        out[_O_PEAK + c] = ua + (((pk & 15) * gain + 8) >> 4)
        crest = 0
        if rq9:
            crest = (pk * 3200 + (rq9 >> 1)) // rq9  # (pk / 16) / (rq9 / 512) * 100
            if crest > 0xFFFF:
                crest = 0xFFFF
        if ((pk * 3200) >> 15) > work[_P_CREST]:
            work[_P_CREST] = (pk * 3200) >> 15
        out[_O_CREST + c] = crest
        out[_O_CLIP + c] = 1 if bottom == 0 or top == ADC_MAX else 0

        # Cycle RMS, offset removed the same way (a trip shows in the very next cycle)
        cq9 = int(_rms_q9(nc, cs1, cs2 >> _LB, cs2 & _LM, noise, cfloor, work))
        out[_O_CYCLE + c] = (cq9 >> 9) * gain + (((cq9 & 511) * gain + 256) >> 9)

        # After a load step: the RMS of the cycles since the step was seen alone, so the new
        # level shows a cycle after the step, not once the whole window has passed it
        r = c * _NRS
        since = rst[r + _R_SINCE]
        if since < MAX_WINDOW:
            since += 1
            rst[r + _R_SINCE] = since
        if since < ncyc:
            s1 = 0
            hi = 0
            lo = 0
            sn = 0
            slot = head
            i = 0
            while i < since:
                k = (slot * NCT + c) * _NACC
                s1 += ring[k + _A_S1]
                s2 = ring[k + _A_S2]
                hi += s2 >> _LB
                lo += s2 & _LM
                sn += ring[_RING_LEN + slot]
                slot = slot - 1 if slot else MAX_WINDOW - 1
                i += 1
            # the gate's margin for sn samples: 6 sigma of the variance estimate
            t = _GATE_K2 // sn
            sfloor = (noise * int(isqrt(t >> _LB, t & _LM, work))) >> 8
            if sfloor < floor:
                sfloor = floor
            if sfloor >= _MAX_NOISE:
                sfloor = _MAX_NOISE - 1
            rst[r + _R_SHORT] = int(_rms_q9(sn, s1, hi, lo, noise, sfloor, work))

        # 3 s aggregate: quadratic mean of the last AGG_WINDOWS window values
        if push:
            ma = rq9 >> _LB
            mb = rq9 & _LM
            sq = mb * mb
            r = (ahead * NCT + c) * 2
            agg[r] = ((ma * ma) << _LB) + 2 * ma * mb + (sq >> _LB)
            agg[r + 1] = sq & _LM
            hi = 0
            lo = 0
            i = 0
            while i < acount:
                r = (i * NCT + c) * 2
                hi += agg[r]
                lo += agg[r + 1]
                i += 1
            hi += lo >> _LB
            lo &= _LM
            if (hi >> 15) > work[_P_AGG_HI]:
                work[_P_AGG_HI] = hi >> 15
            qh = hi // acount
            lo = (((hi - qh * acount) << _LB) + lo) // acount
            qh += lo >> _LB
            lo &= _LM
            root = int(isqrt(qh, lo, work))  # RMS in counts, Q9
            rst[c * _NRS + _R_AGG] = root
            out[_O_AVG + c] = (root >> 9) * gain + (((root & 511) * gain + 256) >> 9)
        c += 1


@micropython.viper
def _rms_q9(n: int, s1: int, hi: int, lo: int, noise: int, floor: int, work: ptr32) -> int:
    # RMS in counts * 2^9 of n samples with sum(x) = s1 and sum((x - 2048)^2) = hi << 14 | lo
    # (lo may exceed 14 bits), less the noise; 0 under the floor. Leaves V = n^2 * variance
    # in work[_W_VH], work[_W_VL] and the largest intermediates in the probe slots.
    hi += lo >> _LB
    lo &= _LM
    sd = s1 - _MID * n

    # V = n * sum(d^2) - sum(d)^2
    vh = n * hi
    vl = n * lo
    if (vh >> 15) > work[_P_NS2]:
        work[_P_NS2] = vh >> 15
    if (vl >> 15) > work[_P_NS2_LO]:
        work[_P_NS2_LO] = vl >> 15
    vh += vl >> _LB
    vl &= _LM
    m = sd if sd >= 0 else 0 - sd
    ma = m >> _LB
    mb = m & _LM
    sq = mb * mb
    if (sq >> 15) > work[_P_SD_SQ]:
        work[_P_SD_SQ] = sq >> 15
    sqh = ((ma * ma) << _LB) + 2 * ma * mb + (sq >> _LB)
    if (sqh >> 15) > work[_P_SD_SQ_HI]:
        work[_P_SD_SQ_HI] = sqh >> 15
    vh -= sqh
    vl -= sq & _LM
    if vl < 0:
        vl += 1 << _LB
        vh -= 1
    if (vh >> 15) > work[_P_V_HI]:
        work[_P_V_HI] = vh >> 15
    work[_W_VH] = vh
    work[_W_VL] = vl

    # Gate G = n^2 * (noise + floor) / 256: under it the channel reads 0
    t = n * (noise + floor)
    tb = (t & _LM) * n
    if (tb >> 15) > work[_P_NOISE]:
        work[_P_NOISE] = tb >> 15
    gh = (t >> _LB) * n + (tb >> _LB)
    gl = ((gh & 255) << 6) | ((tb & _LM) >> 8)
    gh >>= 8
    if vh < gh or (vh == gh and vl < gl):
        return 0

    # Subtract N = n^2 * noise / 256
    t = n * noise
    tb = (t & _LM) * n
    nh = (t >> _LB) * n + (tb >> _LB)
    vl -= ((nh & 255) << 6) | ((tb & _LM) >> 8)
    vh -= nh >> 8
    if vl < 0:
        vl += 1 << _LB
        vh -= 1
    root9 = int(isqrt(vh, vl, work)) << 9
    if (root9 >> 15) > work[_P_ROOT9]:
        work[_P_ROOT9] = root9 >> 15
    return (root9 + (n >> 1)) // n
