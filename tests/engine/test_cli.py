import json

import pytest

from engine.cli import main


def test_local_run_on_real_data_prints_generations_and_writes_json(btc_path, tmp_path, capsys):
    out = tmp_path / "best.json"
    code = main(["--data", str(btc_path), "--population", "12", "--generations", "3", "--risk", "LOW",
                 "--seed", "1", "--permutations", "2", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "59206 candles" in text and "2 gap(s)" in text
    assert [line.split()[1] for line in text.splitlines() if line.startswith("gen ")] == ["1/3", "2/3", "3/3"]
    assert "best strategy: " in text and "holdout" in text
    verdict = next(line for line in text.splitlines() if line.startswith("VERDICT: "))
    assert "over 2 shuffled copies" in verdict and text.index(verdict) < text.index("best strategy: ")
    assert "folds: " in text and "buy and hold: train" in text and "best of 36 random strategies" in text
    result = json.loads(out.read_text())
    assert result["validation"]["verdict"] in ("edge", "no_edge") and len(result["folds"]) == 4
    assert result["seed"] == 1 and result["best_genome"]["entry"] and result["holdout_metrics"]["trades"] >= 0
    assert result["evaluator_version"].startswith("balanced@")


def test_without_data_says_it_is_synthetic(tmp_path, capsys):
    assert main(["--population", "6", "--generations", "1", "--out", str(tmp_path / "b.json")]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out


def test_bad_arguments_exit_2_with_a_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:  # argparse knows the choices: exit 2, with them named
        main(["--risk", "EXTREME", "--out", str(tmp_path / "b.json")])
    assert refused.value.code == 2 and "invalid choice: 'EXTREME'" in capsys.readouterr().err
    assert main(["--data", str(tmp_path / "nope.csv")]) == 2
    assert "file not found" in capsys.readouterr().err
    assert main(["--population", "2"]) == 2
    assert "population" in capsys.readouterr().err
