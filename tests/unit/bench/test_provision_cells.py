"""The provisioning benchmark's arithmetic: pooled turns and the targets' verdicts.

The numbers in the README come from these functions; a slip here would misreport every
cell, so they are checked on hand-made results (no servers, no timing).
"""

from __future__ import annotations

import math

from bench.provision import OVERHEAD_TARGET_MS, RATIO_TARGET, Result, cpu_budget, verdict


def result(requests: int, seconds: float, latencies: list[float], cpu: float | None) -> Result:
    return Result(requests, 0, seconds, tuple(latencies), cpu)


def test_pooled_turns_count_every_request_second_and_latency() -> None:
    turns = [
        result(10, 2.0, [1.0] * 10, 0.5),
        result(30, 3.0, [3.0] * 29 + [90.0], 1.0),
        result(20, 1.0, [2.0] * 20, 0.25),
    ]
    pooled = Result.pooled(turns)
    assert (pooled.requests, pooled.seconds) == (60, 6.0)
    assert pooled.rate == 10.0  # 60 requests over 6 s, not the mean of 5, 10 and 20 req/s
    assert pooled.p50 == 2.5  # all 60 pooled: between the 30th (2.0) and the 31st (3.0)
    assert pooled.p99 == 3.0  # one slow request in 60 is above the 99th percentile's rank
    assert math.isclose(pooled.cpu_ms, 1000 * 1.75 / 60)


def test_a_turn_without_cpu_time_leaves_the_pooled_cpu_unknown() -> None:
    pooled = Result.pooled([result(5, 1.0, [1.0] * 5, 0.1), result(5, 1.0, [1.0] * 5, None)])
    assert math.isnan(pooled.cpu_ms)


def test_verdicts_judge_overhead_at_c1_and_the_ratio_at_the_highest_concurrency() -> None:
    floor = result(100, 1.0, [10.0] * 100, None)
    slow_at_one = result(50, 1.0, [10.0 + OVERHEAD_TARGET_MS + 0.5] * 50, None)
    fast_enough = result(int(100 * RATIO_TARGET), 1.0, [500.0] * 70, None)
    lines = verdict(
        [
            ("sqlite", 0, 1, slow_at_one, floor),
            ("sqlite", 0, 16, result(1, 1.0, [1.0], None), floor),  # judged on neither
            ("sqlite", 0, 64, fast_enough, floor),
        ]
    )
    assert lines == [
        "  sqlite: p50 overhead at 0 ms, c=1: 5.5 ms (target <= 5 ms): MISSED",
        "  sqlite: throughput at 0 ms, c=64: 0.70 of the floor (target >= 0.70): MET",
    ]


def test_a_missed_ratio_with_cpu_known_states_the_cpu_budget() -> None:
    # CPU-bound: the floor spends 2 ms a request, ours 4 ms, so ours serves half as many.
    floor = result(100, 1.0, [10.0] * 100, 0.2)
    ours = result(50, 1.0, [20.0] * 50, 0.2)
    lines = verdict([("postgresql", 0, 64, ours, floor)])
    assert lines == [
        "  postgresql: throughput at 0 ms, c=64: 0.50 of the floor (target >= 0.70): MISSED",
        cpu_budget(4.0, 2.0),
    ]
    # 0.70 lets ours spend 2 / 0.7 = 2.86 ms, of which 0.86 ms beyond the floor's 2 ms.
    assert lines[1] == (
        "    CPU per request: ours 4.00 ms, the floor 2.00 ms; 0.70 allows ours 2.86 ms: "
        "our own work is 2.00 ms, its budget 0.86 ms"
    )


def test_no_budget_line_when_the_ratio_is_met_or_the_cpu_unknown() -> None:
    floor = result(100, 1.0, [10.0] * 100, 0.2)
    met = verdict([("sqlite", 200, 64, result(90, 1.0, [10.0] * 90, 0.2), floor)])
    unknown = verdict([("sqlite", 0, 64, result(50, 1.0, [20.0] * 50, None), floor)])
    assert len(met) == 1 and met[0].endswith("MET")
    assert len(unknown) == 1 and unknown[0].endswith("MISSED")
