"""Files a stranger can name - in an event, a file name, a metadata file - read and deleted only
beneath the directory they are meant to lie in.

A path is walked from the directory's own descriptor one component at a time, never following a
symbolic link (``O_NOFOLLOW`` at every step) and never accepting ``..``: neither a link, nor a
directory swapped for a link between a check and the open (the race of checking ``realpath`` and
then opening by name), leads outside. The opened descriptor is checked with ``fstat`` to be a
regular file with no other name, so a FIFO or a device never blocks or feeds a reader and a hard
link to a file elsewhere (made where the kernel's ``protected_hardlinks`` is off) is never read
as a recording. Deleting unlinks the name in
the directory reached the same way: nothing outside the directory is ever removed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

CHUNK = 256 * 1024
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NO_LINK = os.O_NOFOLLOW


class OutsideDirectory(Exception):
    """The path does not lie beneath the directory: elsewhere, through ``..`` or a symlink."""


class NotRegularFile(Exception):
    """The path names a directory, a FIFO, a device, a socket or a file with other names (a
    hard link), not a file of its own."""


class Beneath:
    """A directory whose files may be opened and deleted, and nothing outside it."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(os.path.abspath(directory))
        self._real = Path(os.path.realpath(directory))  # the operator's own links are fine

    def parts(self, path: Path) -> tuple[str, ...]:
        """The components of ``path`` below the directory, or :class:`OutsideDirectory`."""
        path = Path(path)
        relative = None
        for base in (self.directory, self._real):
            with contextlib.suppress(ValueError):
                relative = path.relative_to(base) if path.is_absolute() else path
                break
        if relative is None or not relative.parts or any(p in ("..", ".") for p in relative.parts):
            raise OutsideDirectory("the path does not lie beneath its directory")
        return relative.parts

    def contains(self, path: Path) -> bool:
        try:
            self.parts(path)
        except OutsideDirectory:
            return False
        return True

    @contextlib.contextmanager
    def _parent(self, path: Path) -> Iterator[tuple[int, str]]:
        """The descriptor of the directory holding ``path``'s last component, and its name."""
        *directories, name = self.parts(path)
        opened = [os.open(self.directory, _DIRECTORY)]
        try:
            for directory in directories:
                opened.append(_step(directory, _DIRECTORY | _NO_LINK, opened[-1]))
            yield opened[-1], name
        finally:
            for descriptor in reversed(opened):
                os.close(descriptor)

    def open(self, path: Path) -> BinaryIO:
        """The file, opened for reading; :class:`OutsideDirectory`, :class:`NotRegularFile` or
        :class:`FileNotFoundError` otherwise."""
        with self._parent(path) as (parent, name):
            flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | _NO_LINK
            descriptor = _step(name, flags, parent)
        try:
            status = os.fstat(descriptor)
            if not stat.S_ISREG(status.st_mode):
                raise NotRegularFile("the path is not a regular file")
            if status.st_nlink != 1:
                raise NotRegularFile("the file has other names (a hard link)")
        except BaseException:
            os.close(descriptor)
            raise
        return os.fdopen(descriptor, "rb")

    def read(self, path: Path) -> Iterator[bytes]:
        """The file's bytes, in chunks, from one descriptor opened as :meth:`open` does."""
        with self.open(path) as handle:
            while chunk := handle.read(CHUNK):
                yield chunk

    def read_bytes(self, path: Path, limit: int) -> bytes:
        """The whole file, or :class:`OverflowError` when it is longer than ``limit`` bytes."""
        with self.open(path) as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise OverflowError(f"the file is larger than {limit} bytes")
        return data

    def unlink(self, path: Path) -> None:
        """Delete the name beneath the directory (a symlink itself, never its target); a name
        already gone is fine."""
        with contextlib.suppress(FileNotFoundError), self._parent(path) as (parent, name):
            os.unlink(name, dir_fd=parent)


def _step(name: str, flags: int, parent: int) -> int:
    try:
        return os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a symlink where a file or a directory was
            raise OutsideDirectory("a symbolic link on the way") from None
        raise
