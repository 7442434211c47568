from client import models as wire
from serve_app.config import RuntimeConfig
from serve_app.mapping import resolve_spec


def test_a_cost_left_out_of_the_job_takes_the_service_default_not_the_wire_default():
    runtime = RuntimeConfig(default_costs=wire.Costs(fee_bps=40, slippage_bps=7, initial_cash=5_000))
    spec = wire.JobSpec(dataset="d", costs={"fee_bps": 10})
    resolved = resolve_spec(spec, runtime, "balanced@1")
    assert resolved.costs == wire.Costs(fee_bps=10, slippage_bps=7, initial_cash=5_000)
    assert resolve_spec(wire.JobSpec(dataset="d"), runtime, "balanced@1").costs == runtime.default_costs
    assert resolved.evaluator == "balanced@1"
