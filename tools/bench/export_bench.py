"""Export benchmark: what one Prometheus scrape of ``/metrics`` costs the service's CPU.

``export.metrics_scrape_ms``: ``smartpdu serve`` (``python -m host``) on the 6-board
``bench72`` virtual PDU (a smartPDU 72: 72 outputs, the meter, the mains node). Blocks of
``scrapes`` back-to-back GETs of /metrics; the service's CPU (utime + stime from /proc) over a
block, less its idle CPU rate over an equal window just before, divided by the scrapes. The
figure is the median of ``blocks`` blocks, ``_worst`` the highest; the load average at the
start and end goes with them (the virtual PDU runs in its own processes, the client here).
"""

from __future__ import annotations

import json
import os
import statistics
import time
import urllib.request
from typing import Any

from tools.bench.service_proc import bench72_service, proc_cpu_s


def _scrape(url: str) -> int:
    with urllib.request.urlopen(url, timeout=10) as response:
        return len(response.read())


def _block_ms(pid: int, url: str, scrapes: int) -> tuple[float, int]:
    """CPU ms per scrape of one block, less the idle rate measured just before it."""
    idle0, t0 = proc_cpu_s(pid), time.monotonic()
    time.sleep(2.0)
    idle_rate = (proc_cpu_s(pid) - idle0) / (time.monotonic() - t0)
    size = 0
    cpu0, t1 = proc_cpu_s(pid), time.monotonic()
    for _ in range(scrapes):
        size = _scrape(url)
    cpu = proc_cpu_s(pid) - cpu0 - idle_rate * (time.monotonic() - t1)
    return max(cpu, 0.0) * 1000 / scrapes, size


def run(blocks: int = 5, scrapes: int = 50, warmup_s: float = 15.0) -> dict[str, Any]:
    load_start = [round(v, 2) for v in os.getloadavg()]
    with bench72_service(warmup_s) as serve:
        url = f"http://127.0.0.1:{serve.port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        outputs = text.count("\nsmartpdu_output_current_amperes{")
        runs = [_block_ms(serve.pid, url, scrapes) for _ in range(blocks)]
    per_scrape = [ms for ms, _ in runs]
    return {
        "export.metrics_scrape_ms": round(statistics.median(per_scrape), 2),
        "export.metrics_scrape_ms_block_worst": round(max(per_scrape), 2),
        "export.metrics_scrape_ms_blocks": [round(ms, 2) for ms in per_scrape],
        "export.metrics_scrapes_per_block": scrapes,
        "export.metrics_bytes": runs[-1][1],
        "export.metrics_live_outputs": outputs,
        "export.load_average_start": load_start,
        "export.load_average_end": [round(v, 2) for v in os.getloadavg()],
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, sort_keys=True))
