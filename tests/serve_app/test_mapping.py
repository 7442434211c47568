import numpy as np
import pytest

from client import models as wire
from serve_app.config import RuntimeConfig
from serve_app.mapping import MAX_CURVE_POINTS, curve_points, resolve_spec


def test_a_cost_left_out_of_the_job_takes_the_service_default_not_the_wire_default():
    runtime = RuntimeConfig(default_costs=wire.Costs(fee_bps=40, slippage_bps=7, initial_cash=5_000))
    spec = wire.JobSpec(dataset="d", costs={"fee_bps": 10})
    resolved = resolve_spec(spec, runtime)
    assert resolved.costs == wire.Costs(fee_bps=10, slippage_bps=7, initial_cash=5_000)
    assert resolve_spec(wire.JobSpec(dataset="d"), runtime).costs == runtime.default_costs
    assert resolved.evaluator is None  # kept as asked: the version it is pinned to is stored beside the spec


def max_drawdown(equity):
    return float(np.max(1.0 - equity / np.maximum.accumulate(equity)))


@pytest.mark.parametrize("seed", range(5))
def test_a_thinned_equity_curve_keeps_the_depth_of_the_deepest_drawdown_and_both_ends(seed):
    rng = np.random.default_rng(seed)
    equity = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.002, size=59_206)))
    equity[rng.integers(59_206)] *= 0.9  # a one-bar spike down that every n-th point would step over
    kept = curve_points(equity)
    assert kept.size <= MAX_CURVE_POINTS and kept[0] == 0 and kept[-1] == equity.size - 1
    assert np.all(np.diff(kept) > 0)
    assert max_drawdown(equity[kept]) == max_drawdown(equity)
    assert np.array_equal(curve_points(equity[:500]), np.arange(500))  # short curves are kept whole
