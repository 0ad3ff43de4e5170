"""How long one `decide` takes: `python tests/unit/scaling/bench_decide.py`.

Not a test (no timing assertions anywhere): a note to re-run when the law changes. It ticks a
loaded service with batching enabled (six candidate batches), one with batching off, and one
whose demand is beyond max replicas at every batch (each option also compared at the maximum),
after a warm-up that fills every bounded history, and prints CPU microseconds per call.
"""

from __future__ import annotations

import sys
import time
import timeit
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scaling_situations import latency_policy, snapshot, workload  # noqa: E402

from sloscale.scaling import Batching, ControlState, Observation, Policy, decide  # noqa: E402


def per_call_us(policy: Policy, calls: int = 3000) -> float:
    state = ControlState.initial(0.0, 4, 64)
    clock = [0.0]
    snaps = [snapshot(0.0, rps=40.0 + (i % 7), pods=4, waiting=float(i % 3)) for i in range(7)]

    def tick() -> None:
        nonlocal state
        clock[0] += 5.0
        obs = Observation(snaps[int(clock[0]) % 7], workload(4))
        _, state = decide(obs, policy, state, clock[0])

    for _ in range(500):  # fill demand, stabilisation and attainment histories
        tick()
    # CPU time, not wall time: the build machines are shared, and waiting for a core is not cost.
    return timeit.timeit(tick, number=calls, timer=time.process_time) / calls * 1e6


def main() -> None:
    batching = latency_policy(
        max_replicas=64, batching=Batching(min_seqs=8, initial_seqs=64, max_seqs=256)
    )
    fixed = replace(batching, batching=Batching(enabled=False))
    capped = replace(batching, max_replicas=2)
    print(f"decide, batching on (6 candidate batches): {per_call_us(batching):.0f} µs/call")
    print(f"decide, batching off:                      {per_call_us(fixed):.0f} µs/call")
    print(f"decide, beyond max replicas (6 batches):   {per_call_us(capped):.0f} µs/call")


if __name__ == "__main__":
    main()
