
import numpy as np
import pytest

from engine import state_codec
from engine.ga import GeneticSearch, SearchStateTooOld
from engine.genome import genome_keys
from engine.settings import MinerSettings


def test_a_tree_of_arrays_and_json_values_comes_back_equal_and_writable():
    tree = {"rows": np.arange(12.0).reshape(3, 4), "keys": [np.array([1, 2**64 - 1], np.uint64), np.empty(0)],
            "nested": {"best": np.array([-np.inf]), "none": None, "text": "ok", "big": 2**100, "flags": [True, 1.5]}}
    back = state_codec.unpack(state_codec.pack(tree))
    np.testing.assert_array_equal(back["rows"], tree["rows"])
    assert back["keys"][0].dtype == np.uint64 and back["keys"][0].tolist() == [1, 2**64 - 1]
    assert back["keys"][1].shape == (0,) and back["nested"]["best"][0] == -np.inf
    assert {k: v for k, v in back["nested"].items() if k != "best"} == {"none": None, "text": "ok", "big": 2**100,
                                                                        "flags": [True, 1.5]}
    back["rows"][0, 0] = 7.0  # a resumed search changes its arrays in place
    assert tree["rows"][0, 0] == 0.0


@pytest.mark.parametrize("damage", [lambda b: b[:-3], lambda b: b"JSONTEXT" + b[8:],
                                    lambda b: b[:20] + b"\xff" + b[21:],
                                    lambda b: b[:8] + (10**6).to_bytes(8, "little") + b[16:]])
def test_damaged_bytes_are_refused_with_a_value_error(damage):
    packed = state_codec.pack({"rows": np.ones((5, 3))})
    with pytest.raises(ValueError, match="checkpoint"):
        state_codec.unpack(damage(packed))


def test_a_checkpoint_of_the_search_before_islands_had_their_own_streams_is_refused_by_name():
    settings = MinerSettings(population=24, generations=4, seed=5, islands=2)
    search = GeneticSearch(settings)
    asked = [genome_keys(search.ask())]
    search.tell(np.arange(24.0))
    state = search.state()
    for island in state["islands"]:  # as the search wrote them until 2026-12-05
        del island["rng"]
    with pytest.raises(SearchStateTooOld, match=r"before islands had their own random streams.*submit the job again"):
        GeneticSearch(settings, state=state, asked=asked)
