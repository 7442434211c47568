"""The service definitions the README tells people to install (deploy/systemd, deploy/launchd), read the way their
service manager reads them, so tests can run exactly the command the manager would start."""

from __future__ import annotations

import plistlib
import re
import shlex
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "deploy" / "systemd" / "miner-worker.service"
PLIST = REPO / "deploy" / "launchd" / "com.strategy-miner.worker.plist"


def unit_settings(path: Path = UNIT) -> dict[str, list[str]]:
    """``key -> values`` of the unit's [Service] section (keys may repeat, e.g. Environment)."""
    settings: dict[str, list[str]] = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service":
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def exec_start(home: str, env_file_text: str, path: Path = UNIT) -> list[str]:
    """The unit's ExecStart as systemd would run it for a user whose home is ``home``: %h expanded, Environment=
    first, then the EnvironmentFile (which wins), ``${VAR}`` one word each, bare ``$VAR`` split on whitespace."""
    settings = unit_settings(path)
    env: dict[str, str] = {}
    for assignment in settings.get("Environment", []):
        key, _, value = assignment.partition("=")
        env[key] = value
    for line in env_file_text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            env[key.strip()] = value.strip()
    (command,) = settings["ExecStart"]
    argv: list[str] = []
    for word in shlex.split(command.replace("%h", home)):
        if re.fullmatch(r"\$[A-Za-z_]\w*", word):
            argv += env.get(word[1:], "").split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
    return argv


def plist_arguments(home: str, head: str, ip: str, path: Path = PLIST) -> list[str]:
    """The launchd agent's ProgramArguments with the README's placeholders filled in."""
    text = path.read_text().replace("__HOME__", home).replace("__HEAD_IP__", head).replace("__THIS_IP__", ip)
    return plistlib.loads(text.encode())["ProgramArguments"]
