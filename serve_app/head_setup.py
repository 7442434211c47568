"""Prepare the head node's files before the service starts (deploy/start-head.sh runs this).

    python -m serve_app.head_setup deploy/config.yaml [--no-data]

Reads the app ``args`` of the Serve config, the same ones the service reads (``serve_app.config.ServiceSettings``),
so it creates exactly the files the service will look for:

- the API token (``token_file``) and the admin token (``admin_token_file``, pushing evaluators), each a 0600 file,
  generated only if absent and not already given by ``token``/``admin_token`` or $MINER_TOKEN/$MINER_ADMIN_TOKEN;
- the data folder (``data_dir``) with the dataset this repository ships (data/BTC-USD_FIVE_MINUTE.csv.gz),
  linked in unless a dataset of that name is there already, so a fresh head mines real BTC candles.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import yaml

from serve_app.config import ServiceSettings

SHIPPED = Path(__file__).resolve().parents[1] / "data" / "BTC-USD_FIVE_MINUTE.csv.gz"
DATASET_SUFFIXES = (".csv", ".csv.gz", ".parquet")  # serve_app.datasets.SUFFIXES, without importing Ray here


def ensure_token(path: Path) -> str:
    """The token in ``path``, generated first if the file is missing or empty; never readable by others."""
    path = path.expanduser()
    if not path.is_file() or not path.read_text().strip():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # created 0600 from the start: a chmod after writing would leave a moment where others can read it
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            # hex, not urlsafe base64: one urlsafe token in 64 starts with "-", which a command line then takes for
            # a flag (`miner --token -x...` fails)
            out.write(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path.read_text().strip()


def app_settings(config_path: Path) -> ServiceSettings:
    """The ``args`` of the config's (only) application, defaults filled in, without the token check: the tokens
    may not exist yet, this is what creates them."""
    config = yaml.safe_load(config_path.read_text())
    (application,) = config["applications"]
    return ServiceSettings.model_construct(**application.get("args", {}))


def link_shipped_data(data_dir: Path, shipped: Path = SHIPPED) -> str:
    name = shipped.name[: -len(".csv.gz")]
    present = [data_dir / (name + suffix) for suffix in DATASET_SUFFIXES if (data_dir / (name + suffix)).exists()]
    if present:
        return f"dataset {name}: {present[0]} (already there)"
    if not shipped.is_file():
        return f"dataset {name}: not shipped in this checkout ({shipped} missing); add candle files to {data_dir}"
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / shipped.name).symlink_to(shipped)  # a link, not a copy: a `git pull` updates it too
    return f"dataset {name}: {data_dir / shipped.name} -> {shipped}"


def prepare(config_path: Path, with_data: bool = True) -> list[str]:
    settings = app_settings(config_path)
    lines = []
    for label, value, variable, file in (
            ("API token", settings.token, "MINER_TOKEN", settings.token_file),
            ("admin token", settings.admin_token, "MINER_ADMIN_TOKEN", settings.admin_token_file)):
        if value or os.environ.get(variable):
            lines.append(f"{label}: given in {'the config' if value else '$' + variable}")
        else:
            ensure_token(settings.path(file))
            lines.append(f"{label}: {settings.path(file)}")
    if settings.data_dir:
        data_dir = settings.path(settings.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        lines.append(link_shipped_data(data_dir) if with_data else f"data folder: {data_dir}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serve_app.head_setup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="the Serve config, e.g. deploy/config.yaml")
    parser.add_argument("--no-data", action="store_true", help="do not link the shipped BTC dataset in")
    args = parser.parse_args(argv)
    for line in prepare(args.config, with_data=not args.no_data):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
