"""Writing into a folder the agent can also write, without ever following a link it planted.

The agent's shell can put a symlink anywhere in its home (`data/drafts/x -> ../../scripts/post.py`,
`data -> /koda/state`). A service that then writes "data/drafts/x" with an ordinary `open()`
would write through the link, with the service's rights, wherever it points. Every file Koda
writes into the home on the agent's behalf goes through this module instead:

- the path is walked one folder at a time from the (trusted) root, each opened with
  `O_NOFOLLOW | O_DIRECTORY` relative to the previous one, so a link at any level is refused;
- the file is written to a fresh temporary name created with `O_EXCL | O_NOFOLLOW` in that
  folder and renamed over the target within the same folder (`os.replace` with folder fds),
  so a reader never sees half a file and a link at the target is refused, not followed;
- appends open the target with `O_APPEND | O_NOFOLLOW`, and refuse anything but a regular file
  with one link (a hard link would carry the append to the file it shares).

A refusal raises `UnsafePath`, which names the path and the reason.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from .errors import KodaError

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafePath(KodaError):
    """A write refused because a link or something other than a plain folder/file was in the way."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"refused to write {path}: {reason}")


def _parts(relative: str | PurePosixPath) -> list[str]:
    rel = PurePosixPath(relative)
    if rel.is_absolute() or not rel.parts or any(p in ("..", ".", "") for p in rel.parts):
        raise ValueError(f"{relative!s} must be a plain relative path inside its folder")
    return list(rel.parts)


@contextmanager
def open_folder(root: Path, relative: str | PurePosixPath | None, *, create: bool = True,
                mode: int = 0o755) -> Iterator[int]:
    """A descriptor of `root/relative`, reached without following any link below `root`
    (missing folders are created with `mode` when `create`)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    walked = root
    try:
        for part in _parts(relative) if relative else []:
            walked = walked / part
            try:
                nxt = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(part, mode, dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile (or a dangling link: the open below refuses it)
                nxt = _open_dir(part, fd, walked)
            except OSError as exc:
                raise _refusal(walked, exc) from exc
            os.close(fd)
            fd = nxt
        yield fd
    finally:
        os.close(fd)


def _open_dir(name: str, dir_fd: int, path: Path) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise _refusal(path, exc) from exc


def _refusal(path: Path, exc: OSError) -> UnsafePath | OSError:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return UnsafePath(path, "it is a symbolic link or not a folder")
    return exc


def _split(relative: str | PurePosixPath) -> tuple[PurePosixPath | None, str]:
    parts = _parts(relative)
    return (PurePosixPath(*parts[:-1]) if len(parts) > 1 else None), parts[-1]


def _check_target(name: str, fd: int, path: Path) -> os.stat_result | None:
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        kind = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise UnsafePath(path, f"it is {kind}")
    return st


def write_file(root: Path, relative: str | PurePosixPath, data: bytes | str, *, mode: int = 0o644,
               folder_mode: int = 0o755) -> Path:
    """Replace `root/relative` with `data`, atomically, refusing links anywhere below `root`."""
    folder, name = _split(relative)
    path = root / str(relative)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with open_folder(root, folder, mode=folder_mode) as fd:
        _check_target(name, fd, path)
        tmp = f".{name}.{secrets.token_hex(6)}.tmp"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode,
                      dir_fd=fd)
        try:
            with os.fdopen(out, "wb") as f:
                f.write(payload)
                f.flush()
                os.fchmod(f.fileno(), mode)  # the umask may have narrowed it; never wider
                os.fsync(f.fileno())
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
            raise
    return path


def append_text(root: Path, relative: str | PurePosixPath, text: str, *, mode: int = 0o644) -> Path:
    """Append `text` to `root/relative` (created if missing), refusing links anywhere below `root`."""
    folder, name = _split(relative)
    path = root / str(relative)
    with open_folder(root, folder) as fd:
        _check_target(name, fd, path)
        try:
            # O_NONBLOCK: a fifo swapped in after the check cannot hang the service.
            out = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                          | os.O_NONBLOCK, mode, dir_fd=fd)
        except OSError as exc:
            raise _refusal(path, exc) from exc
        with os.fdopen(out, "a", encoding="utf-8") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise UnsafePath(path, "it is not a regular file")
            if st.st_nlink > 1:  # a hard link to a file elsewhere: appending would change it
                raise UnsafePath(path, "it has other hard links")
            f.write(text)
    return path


def read_bytes(root: Path, relative: str | PurePosixPath) -> bytes | None:
    """The bytes of `root/relative`, None when missing; refuses links like the writers do."""
    folder, name = _split(relative)
    path = root / str(relative)
    try:
        with open_folder(root, folder, create=False) as fd:
            try:
                # O_NONBLOCK: a fifo planted there cannot hang the reader (refused below).
                src = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return None
                raise _refusal(path, exc) from exc
            with os.fdopen(src, "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise UnsafePath(path, "it is not a regular file")
                return f.read()
    except FileNotFoundError:
        return None


def make_folder(root: Path, relative: str | PurePosixPath, *, mode: int = 0o755) -> None:
    """Create `root/relative` (and the folders above it) and set its mode, without following links."""
    with open_folder(root, relative, mode=mode) as fd:
        os.fchmod(fd, mode)


def set_mode(root: Path, relative: str | PurePosixPath, mode: int) -> None:
    """chmod `root/relative` (a regular file) without following a link planted there."""
    folder, name = _split(relative)
    with open_folder(root, folder, create=False) as fd:
        _check_target(name, fd, root / str(relative))
        try:
            f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise _refusal(root / str(relative), exc) from exc
        try:
            os.fchmod(f, mode)
        finally:
            os.close(f)
