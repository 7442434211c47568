import subprocess

import pytest

from serve_app.reserve import Reserve


@pytest.fixture
def small_disk(tmp_path):
    """A 16 MB tmpfs (root, as on CI): a disk that really fills up."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_the_reserve_is_freed_on_a_full_disk_and_taken_back_only_when_there_is_room(small_disk):
    reserve = Reserve(small_disk / "miner.db", size=4 * 1024 * 1024)
    assert reserve.take() and reserve.held
    filler = small_disk / "filler"
    with pytest.raises(OSError), open(filler, "wb") as f:  # the disk fills up
        while True:
            f.write(bytes(1024 * 1024))
            f.flush()
    reserve.free()
    assert not reserve.held
    # its own room alone is not "someone freed space": taking it back would resume a job into a full disk
    assert not reserve.take() and not reserve.path.exists()
    (small_disk / "pause").write_bytes(bytes(1024 * 1024))  # the room it leaves is there to be used
    assert not reserve.take() and not reserve.path.exists()  # no room for it again: no partial file either
    filler.unlink()
    (small_disk / "other").write_bytes(bytes(7 * 1024 * 1024))  # 16 - 1 - 7 = 8 MB free: the reserve and as much
    assert reserve.take() and reserve.held


def test_a_reserve_cut_short_by_a_crash_counts_its_own_room_when_taken_back(small_disk):
    reserve = Reserve(small_disk / "miner.db", size=4 * 1024 * 1024)
    reserve.path.write_bytes(bytes(3 * 1024 * 1024))  # killed while writing it: held is False, its 3 MB are used
    (small_disk / "other").write_bytes(bytes(7 * 1024 * 1024))  # 16 - 3 - 7 = 6 MB free, 9 MB once it is rewritten
    assert not reserve.held
    assert reserve.take() and reserve.held
