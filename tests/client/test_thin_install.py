"""A laptop with only the base install (no extras) drives the service: no Ray, Numba, numpy or pandas."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_base_install_has_no_ray_and_drives_the_service_through_the_cli(service, tmp_path):
    venv = tmp_path / "thin"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python, miner = venv / "bin" / "python", venv / "bin" / "miner"
    subprocess.run([python, "-m", "pip", "install", "--quiet", str(REPO)], check=True, capture_output=True)
    for heavy in ("ray", "numba", "numpy", "pandas"):
        probe = subprocess.run([python, "-c", f"import {heavy}"], capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, heavy
    loaded = subprocess.run([python, "-c", "import sys, client.cli; print(sorted(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout
    assert not {"ray", "numba", "numpy", "pandas", "engine", "serve_app"} & set(eval(loaded))

    env = {**os.environ, "MINER_URL": service.url, "MINER_TOKEN": service.token, "MINER_HOME": str(tmp_path)}
    submitted = subprocess.run([miner, "submit", "--dataset", "synthetic", "--population", "10", "--generations",
                                "3", "--seed", "5", "--follow"], capture_output=True, text=True, env=env, timeout=300)
    assert submitted.returncode == 0, submitted.stderr
    assert "generation 3/3" in submitted.stdout and "best strategy:" in submitted.stdout
    job_id = re.search(r"submitted job (\w+)", submitted.stdout).group(1)
    result = subprocess.run([miner, "result", job_id], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and "holdout" in result.stdout
