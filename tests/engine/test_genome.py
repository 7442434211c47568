import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from engine import layout as L
from engine.genome import Genome, decode, encode

from .test_kernel import NO_STOP, genomes

SPEC = {
    "direction": "long",
    "entry": [{"left": {"field": "close"}, "op": ">", "right": {"indicator": "sma", "period": 20}},
              {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 70}}],
    "exit": [{"left": {"field": "close"}, "op": "crosses_below", "right": {"indicator": "sma", "period": 50}}],
    "stop_loss": 0.02, "take_profit": 0.04,
}


@settings(max_examples=200, deadline=None)
@given(st.one_of(genomes(), genomes(stop_losses=NO_STOP)))
def test_encode_decode_round_trip(genome):
    row = encode(genome)
    assert row.shape == (L.GENOME_WIDTH,) and row.dtype == np.float64
    assert decode(row) == genome
    assert Genome.model_validate_json(genome.model_dump_json()) == genome


def test_json_is_readable():
    genome = Genome.model_validate(SPEC)
    data = json.loads(genome.model_dump_json())
    assert data["entry"][1] == {"left": {"indicator": "rsi", "period": 14}, "op": "<", "right": {"constant": 70.0}}
    assert genome.describe() == ("LONG when close > sma(20) AND rsi(14) < 70; exit when close crosses_below "
                                 "sma(50); stop 2.00%, target 4.00%, size 100%")


@pytest.mark.parametrize("stop_loss", [0, 0.0, None])
def test_no_stop_loss_is_a_strategy(stop_loss):
    genome = Genome.model_validate({**SPEC, "stop_loss": stop_loss})
    assert genome.stop_loss == 0.0 and encode(genome)[L.STOP_LOSS] == 0.0
    assert genome.describe().endswith("; no stop, target 4.00%, size 100%")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stop_loss": 2.0}, "did you mean 0.02?"),
        ({"stop_loss": -0.02}, "stop_loss is the loss"),
        ({"stop_loss": 0.9}, "(0 turns it off)"),
        ({"take_profit": -0.1}, "0 turns it off"),
        ({"size": 1.5}, "fraction of available cash"),
        ({"leverage": 20}, "between 1 (no leverage) and 10"),
        ({"entry": []}, "at least 1 item"),
        ({"exit": SPEC["entry"] * 2}, "at most 2 items"),
        ({"entry": [{"left": {"indicator": "sma", "period": 1}, "op": ">", "right": {"field": "close"}}]},
         "between 2 and 500 bars"),
        ({"entry": [{"left": {"constant": 3}, "op": ">", "right": {"field": "close"}}]}, "left"),
        ({"entry": [{"left": {"field": "close"}, "op": "=>", "right": {"field": "open"}}]}, "crosses_above"),
        ({"direction": "sideways"}, "'long' or 'short'"),
    ],
)
def test_bounds_are_explained(change, message):
    with pytest.raises(ValidationError) as info:
        Genome.model_validate({**SPEC, **change})
    assert message in str(info.value)
