"""Output directories checked before the work that fills them.

A conversion, a training run or a batch of images can take minutes to hours; finding then that
the output path is a file, sits under a missing or read-only parent, or is not writable loses
that time. `writable_dir` makes the directory (and its parents) at once and proves it can take
a file, raising an OutputPathError (a ValueError: one line for the user) that says what is wrong
and how to fix it.
"""

import errno
import os
import tempfile


class OutputPathError(ValueError):
    """An output path that cannot be written, in one line naming the path and the fix."""


def writable_dir(path: str, what: str = "output directory") -> str:
    """Create `path` if needed and check a file can be written in it; returns its absolute path."""
    path = os.path.abspath(os.path.expanduser(path))
    blocker = _file_in_the_way(path)
    if blocker:
        where = "is a file" if blocker == path else f"cannot be made: {blocker} is a file"
        raise OutputPathError(f"{what} {path} {where}; choose another path or move the file away")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as e:
        reason = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                  errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on the device",
                  errno.ENOENT: "a parent directory cannot be created"}.get(e.errno, e.strerror or str(e))
        raise OutputPathError(f"{what} {path} cannot be written ({reason}); choose a path you can "
                              f"write to") from None
    return path


def _file_in_the_way(path: str) -> str | None:
    """The path itself or the first of its parents that exists and is not a directory."""
    parts = []
    head = path
    while head and head != os.path.dirname(head):
        parts.append(head)
        head = os.path.dirname(head)
    for candidate in reversed(parts):
        if os.path.exists(candidate) and not os.path.isdir(candidate):
            return candidate
        if not os.path.exists(candidate):
            return None
    return None
