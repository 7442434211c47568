"""A few megabytes held in reserve beside the job store, so that a full disk can still be written about.

When the disk fills up, the coordinator frees the reserve and uses the room to store that its running jobs are
``paused`` (status and event: followers see it); it then tries to take the reserve back every few seconds, and
only when that succeeds (someone freed space) do jobs resume. Without it, "the disk is full" could not be stored,
and a job would look ``running`` while it waits. (The same idea as ext4's reserved blocks, for one program.)
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

DEFAULT_RESERVE_BYTES = 4 * 1024 * 1024  # a status, an event and their WAL frames need kilobytes


class Reserve:
    def __init__(self, store_path: Path, size: int = DEFAULT_RESERVE_BYTES):
        self.path = store_path.with_name(store_path.name + ".reserve")
        self.size = size

    @property
    def held(self) -> bool:
        return self.path.exists() and self.path.stat().st_size == self.size

    def take(self) -> bool:
        """Hold the reserve (allocated, not a sparse file); False unless the disk has room for it and as much again.

        The margin is what makes a pause end only once someone has freed space: right after a pause, the reserve's
        own room is free again (storing the pause can reuse pages the store already holds), and taking just that
        back would resume the job into the same full disk, to pause again at its next write, every probe."""
        if self.held:
            return True
        disk = os.statvfs(self.path.parent)
        if disk.f_bavail * disk.f_frsize + self._partial_bytes() < 2 * self.size:
            return False
        try:  # zeros written and synced, not a sparse file (and not posix_fallocate, which macOS lacks)
            with open(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
                f.write(bytes(self.size))
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            self.path.unlink(missing_ok=True)
            if exc.errno != errno.ENOSPC:
                raise
            return False
        return True

    def _partial_bytes(self) -> int:
        """The room a reserve cut short by a crash holds: rewriting it frees that first."""
        try:
            return self.path.stat().st_blocks * 512
        except FileNotFoundError:
            return 0

    def free(self) -> None:
        self.path.unlink(missing_ok=True)
