import shutil

from engine.sources import DIGEST, SOURCES, digest_of


def test_the_engine_digest_names_its_sources_and_changes_with_any_of_them(tmp_path):
    copy = tmp_path / "engine"
    shutil.copytree(SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert digest_of(copy) == DIGEST == digest_of(SOURCES)
    (copy / "layout.py").write_text((copy / "layout.py").read_text() + "# a comment is other code too\n")
    assert digest_of(copy) != DIGEST
    (copy / "layout.py").write_text((SOURCES / "layout.py").read_text())
    (copy / "extra.py").write_text("")
    assert digest_of(copy) != DIGEST  # a file added


def test_hidden_files_beside_the_sources_are_not_sources(tmp_path):
    copy = tmp_path / "engine"
    shutil.copytree(SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / ".#kernel.py").symlink_to(tmp_path / "user@host.1234")  # Emacs' lock of an unsaved edit: dangling
    (copy / "._kernel.py").write_bytes(b"\x00\x05\x16\x07")  # macOS's metadata twin on a shared volume
    assert digest_of(copy) == DIGEST
