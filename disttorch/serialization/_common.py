"""What every checkpoint format shares: the error type, atomic file writes, and ``map_location``."""
from __future__ import annotations

import os
import tempfile

from .. import _backend
from .._device import device as _device


class CheckpointError(RuntimeError):
    """A file that is not a readable checkpoint (foreign, truncated or corrupt)."""


def _default_mode():
    """Permissions a new file gets from the umask (mkstemp's files are 0600 otherwise)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write):
    """Runs ``write(fh, tmp_path)`` on a temporary file beside ``path``, fsyncs it, then renames it over ``path``.

    A failure at any point (an exception, a crash, a full disk) leaves the previous ``path``
    untouched; an exception also removes the temporary file.
    """
    path = os.fspath(path)
    if os.path.islink(path):
        path = os.path.realpath(path)  # replace the link's target, as writing through the link would
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise RuntimeError(f"Parent directory {directory} does not exist.")
    mode = os.stat(path).st_mode & 0o7777 if os.path.exists(path) else _default_mode()
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh, tmp)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems cannot fsync a directory; the data itself is synced


def place_tensor(t, location, map_location):
    """Moves a loaded tensor saved at ``location`` ("cpu", "cuda:0") where ``map_location`` says:
    None (where it was saved), a device or string, a dict from saved to new locations, or
    ``fn(tensor, location)`` (its result, or the tensor when it returns None)."""
    ml = map_location
    if callable(ml) and not isinstance(ml, (str, _device)):
        moved = ml(t, location)
        return t if moved is None else moved
    if isinstance(ml, dict):
        ml = ml.get(location, location)
    target = location if ml is None else str(ml)
    if _device(target).type == "cuda":
        if not _backend.cuda_available():
            raise RuntimeError("Attempting to deserialize object on a CUDA device but torch.cuda.is_available() "
                               "is False. If you are running on a CPU-only machine, please use torch.load with "
                               "map_location=torch.device('cpu') to map your storages to the CPU.")
        requires_grad = t._requires_grad
        moved = t.detach().to(target)
        if type(t) is not type(moved):  # a Parameter stays a Parameter on its new device
            moved = type(t)(moved, requires_grad)
        moved._requires_grad = requires_grad
        return moved
    return t
