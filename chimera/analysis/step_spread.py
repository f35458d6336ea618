"""Was a run's throughput disturbed? The spread of its per-interval step times, from the record alone.

A record's `timing` holds one mean optimiser-step time per evaluation interval. On a machine the run
had to itself these stay close (the fixed and reference runs of docs/results/full, each alone on its
core: slowest interval 1.13-1.44x the median); a pause (SIGSTOP, a suspended laptop) or a second job
on the same core shows as intervals several times slower (the baseline runs there, which shared their
core for a while: 2.95x and 3.32x). A run whose slowest interval exceeds DISTURBED_RATIO x its median
is called disturbed: its mean throughput describes the machine's load, not the code, so the report
keeps it apart from clean runs and shows the spread instead.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from chimera.records.record import RunRecord

DISTURBED_RATIO = 2.0
MIN_INTERVALS = 3  # fewer: no median worth comparing against


@dataclass(frozen=True)
class StepSpread:
    """Per-interval step times of one run, in seconds."""

    intervals: int
    median_s: float
    p10_s: float
    p90_s: float
    slowest_s: float

    @property
    def slowest_ratio(self) -> float:
        return self.slowest_s / self.median_s

    @property
    def disturbed(self) -> bool:
        return self.slowest_ratio > DISTURBED_RATIO


def step_spread(record: RunRecord) -> StepSpread | None:
    """The spread of a record's interval step times; None with fewer than MIN_INTERVALS timed intervals."""
    times = [t.step_time_s for t in record.timing if (t.step_time_s or 0) > 0]
    if len(times) < MIN_INTERVALS:
        return None
    deciles = statistics.quantiles(times, n=10, method="inclusive")
    return StepSpread(intervals=len(times), median_s=statistics.median(times), p10_s=deciles[0], p90_s=deciles[-1],
                      slowest_s=max(times))
