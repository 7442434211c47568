"""Files only this user can read: the state folder 0700, the job store, its backups and markers 0600.

The store holds every job, result and evaluator source; uploads are the user's data. Other local users must not
read them, whatever the umask was when a folder was first made (``mkdir -p ~/.miner`` gives 0755).
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger("ray")


def private_dir(path: Path) -> Path:
    """Create ``path`` readable by this user only, or tighten it to 0700 if it exists with wider modes.

    A folder that is not ours to tighten is left as it is, with a warning: one owned by someone else, the home
    folder, or a shared sticky folder such as /tmp (a store path put straight into it).
    """
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if not info.st_mode & 0o077:
        return path
    ours = info.st_uid == os.getuid() and not info.st_mode & stat.S_ISVTX and path.resolve() != Path.home().resolve()
    if ours:
        path.chmod(0o700)
    else:
        log.warning("%s is readable by other users and is not a folder of this service's own to tighten; "
                    "put the job store and uploads in a folder of their own (e.g. ~/.miner)", path)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it is missing (never readable by others, not even for a moment),
    or set an existing one to 0600."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
    return path


def write_private(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step (a crash or a power cut leaves the old file or the new one), mode
    0600."""
    staged = private_file(path.with_name(path.name + ".partial"))
    write_synced(staged, text.encode())
    os.replace(staged, path)
    sync_folder(path.parent)


def write_synced(path: Path, content: bytes) -> None:
    """Write ``path`` and wait until its bytes are on disk, so that a name given to it afterwards never names an
    empty or partial file after a power cut."""
    with open(path, "wb") as file:
        file.write(content)
        file.flush()
        os.fsync(file.fileno())


def sync_folder(path: Path) -> None:
    """Make the names in ``path`` durable: a file renamed or linked there survives a power cut under that name."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
