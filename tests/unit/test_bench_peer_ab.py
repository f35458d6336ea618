"""bench/peer_ab.py alternates the two steps, so both see the same moments of the machine."""

from __future__ import annotations

from bench.peer_ab import interleaved


def test_steps_alternate_after_the_warm_up_and_every_pair_is_timed():
    calls: list[str] = []
    ours_s, peer_s = interleaved(lambda: calls.append("ours"), lambda: calls.append("peer"), pairs=4, warmup=2)
    assert calls == ["ours", "peer"] * 6
    assert len(ours_s) == len(peer_s) == 4 and all(t >= 0 for t in ours_s + peer_s)
