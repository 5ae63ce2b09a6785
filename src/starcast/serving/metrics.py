"""Request counters, a latency histogram and event counts in Prometheus' text format."""

from __future__ import annotations

import threading
from collections import Counter

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self, model_version: str) -> None:
        self.model_version = model_version
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[str, list[int]] = {}  # path -> cumulative counts per bucket (+Inf)
        self.latency_sum: Counter[str] = Counter()
        self.events_applied = 0

    def observe(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(method, path, status)] += 1
            counts = self.latency.setdefault(path, [0] * (len(BUCKETS) + 1))
            for k, bound in enumerate((*BUCKETS, float("inf"))):
                if seconds <= bound:
                    counts[k] += 1
            self.latency_sum[path] += seconds

    def add_events(self, n: int) -> None:
        with self._lock:
            self.events_applied += n

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP starcast_requests_total HTTP requests by method, path and status.",
                "# TYPE starcast_requests_total counter",
                *(f'starcast_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}'
                  for (m, p, s), n in sorted(self.requests.items())),
                "# HELP starcast_request_seconds Request latency.",
                "# TYPE starcast_request_seconds histogram",
            ]
            for path, counts in sorted(self.latency.items()):
                for bound, n in zip((*BUCKETS, "+Inf"), counts, strict=True):
                    labels = f'path="{path}",le="{bound}"'
                    lines.append(f"starcast_request_seconds_bucket{{{labels}}} {n}")
                lines.append(f'starcast_request_seconds_sum{{path="{path}"}} '
                             f"{self.latency_sum[path]:.6f}")
                lines.append(f'starcast_request_seconds_count{{path="{path}"}} {counts[-1]}')
            lines += [
                "# HELP starcast_events_applied_total Events stored and applied to the states.",
                "# TYPE starcast_events_applied_total counter",
                f"starcast_events_applied_total {self.events_applied}",
                "# HELP starcast_model_info The model being served.",
                "# TYPE starcast_model_info gauge",
                f'starcast_model_info{{version="{self.model_version}"}} 1',
            ]
        return "\n".join(lines) + "\n"
