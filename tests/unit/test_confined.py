"""Files opened and deleted only beneath their directory, whatever a path or a link says."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.adapters.confined import Beneath, NotRegularFile, OutsideDirectory


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    (tmp_path / "spool" / "day").mkdir(parents=True)
    (tmp_path / "spool" / "day" / "a.wav").write_bytes(b"audio")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "a.wav").write_bytes(b"someone else's")
    return tmp_path / "spool"


def test_a_file_beneath_is_read_and_deleted(spool: Path) -> None:
    beneath = Beneath(spool)
    assert b"".join(beneath.read(spool / "day" / "a.wav")) == b"audio"
    beneath.unlink(spool / "day" / "a.wav")
    beneath.unlink(spool / "day" / "a.wav")  # gone already: fine
    assert not (spool / "day" / "a.wav").exists()


@pytest.mark.parametrize(
    "named", ["../elsewhere/a.wav", "day/../../elsewhere/a.wav", "/etc/hostname", "day"]
)
def test_a_path_leaving_the_directory_is_refused(spool: Path, named: str) -> None:
    beneath = Beneath(spool)
    with pytest.raises((OutsideDirectory, NotRegularFile, IsADirectoryError)):
        beneath.open(spool / named)


def test_deleting_through_a_linked_directory_removes_nothing_outside(spool: Path) -> None:
    outside = spool.parent / "elsewhere" / "a.wav"
    (spool / "linked").symlink_to(outside.parent)
    with pytest.raises(OutsideDirectory):
        Beneath(spool).unlink(spool / "linked" / "a.wav")
    assert outside.exists()


def test_deleting_a_link_removes_the_link_never_its_target(spool: Path) -> None:
    outside = spool.parent / "elsewhere" / "a.wav"
    (spool / "link.wav").symlink_to(outside)
    beneath = Beneath(spool)
    with pytest.raises(OutsideDirectory):
        beneath.open(spool / "link.wav")
    beneath.unlink(spool / "link.wav")
    assert not (spool / "link.wav").is_symlink()
    assert outside.exists()


def test_a_directory_configured_through_a_link_still_works(spool: Path) -> None:
    (spool.parent / "configured").symlink_to(spool)  # the operator's own link is followed
    beneath = Beneath(spool.parent / "configured")
    assert b"".join(beneath.read(spool.parent / "configured" / "day" / "a.wav")) == b"audio"
    assert b"".join(beneath.read(spool / "day" / "a.wav")) == b"audio"  # the real path too


def test_a_hard_link_to_a_file_elsewhere_is_not_read(spool: Path) -> None:
    outside = spool.parent / "elsewhere" / "a.wav"
    (spool / "day" / "hard.wav").hardlink_to(outside)
    beneath = Beneath(spool)
    with pytest.raises(NotRegularFile):
        beneath.open(spool / "day" / "hard.wav")
    beneath.unlink(spool / "day" / "hard.wav")
    assert outside.read_bytes() == b"someone else's"
