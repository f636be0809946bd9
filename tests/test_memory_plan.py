"""The offline memory plan: buffers alive at the same operator never share bytes, and the plan reaches the
lower bound on a chain."""

from __future__ import annotations

import itertools

import numpy as np

from mcuasc.convert.memory_plan import ALIGNMENT, Lifetime, plan_memory


def _assert_valid(spans, plan):
    for a, b in itertools.combinations(spans, 2):
        if a.overlaps(b):
            a0, b0 = plan.offsets[a.tensor], plan.offsets[b.tensor]
            assert a0 + a.size <= b0 or b0 + b.size <= a0, (a, b, a0, b0)
    assert all(offset % ALIGNMENT == 0 for offset in plan.offsets.values())
    assert plan.head_bytes >= plan.lower_bound_bytes


def test_chain_with_a_long_lived_skip_reaches_the_lower_bound():
    # x feeds ops 1 and 4 (a residual), a chain of temporaries in between.
    spans = [Lifetime(0, 1024, 0, 4), Lifetime(1, 1024, 1, 2), Lifetime(2, 512, 2, 3), Lifetime(3, 1024, 3, 4),
             Lifetime(4, 1024, 4, 5)]
    plan = plan_memory(spans)
    _assert_valid(spans, plan)
    assert plan.lower_bound_bytes == 3072 and plan.head_bytes == 3072


def test_random_lifetimes_never_overlap():
    rng = np.random.default_rng(0)
    for _ in range(50):
        spans = []
        for t in range(30):
            first = int(rng.integers(0, 40))
            spans.append(Lifetime(t, int(rng.integers(1, 64)) * ALIGNMENT, first, first + int(rng.integers(0, 6))))
        _assert_valid(spans, plan_memory(spans))


def test_in_place_aliases_share_their_buffers_offset():
    spans = [Lifetime(0, 1024, 0, 3, aliases=(5, 6)), Lifetime(1, 512, 1, 2), Lifetime(2, 1024, 3, 4)]
    plan = plan_memory(spans)
    _assert_valid(spans, plan)
    assert plan.offsets[5] == plan.offsets[6] == plan.offsets[0]
