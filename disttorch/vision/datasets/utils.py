"""Downloading with checksums, archive extraction, and file checks for the datasets."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile

_CHUNK = 1 << 20
_USER_AGENT = "disttorch"
DOWNLOAD_TIMEOUT_S = 30


def calculate_md5(fpath: str, chunk_size: int = _CHUNK) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(fpath, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            md5.update(chunk)
    return md5.hexdigest()


def check_md5(fpath: str, md5: str) -> bool:
    return md5 == calculate_md5(fpath)


def check_integrity(fpath: str, md5: str | None = None) -> bool:
    """The file exists and, when ``md5`` is given, has that checksum."""
    if not os.path.isfile(fpath):
        return False
    return md5 is None or check_md5(fpath, md5)


def download_url(url: str, root: str, filename: str | None = None, md5: str | None = None) -> str:
    """Downloads ``url`` to ``root/filename`` (skipped when a file with that checksum exists).

    The file is written under a temporary name and renamed only once its checksum matches, so an
    interrupted or corrupted download never looks like a good file. Raises ``URLError`` / ``OSError``
    when the server cannot be reached and ``RuntimeError`` on a checksum mismatch.
    """
    root = os.path.expanduser(root)
    filename = filename or os.path.basename(url)
    fpath = os.path.join(root, filename)
    os.makedirs(root, exist_ok=True)
    if check_integrity(fpath, md5):
        return fpath
    partial = fpath + ".part"
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out, _CHUNK)
        if md5 is not None:
            actual = calculate_md5(partial)
            if actual != md5:
                raise RuntimeError(f"{filename} downloaded from {url} failed its MD5 check (expected {md5}, "
                                   f"got {actual}); the mirror may serve a corrupt or different file.")
        os.replace(partial, fpath)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    return fpath


def download_from_mirrors(filename: str, mirrors, root: str, md5: str | None) -> str:
    """Tries each mirror in turn; a clear RuntimeError when none of them works (e.g. offline)."""
    errors = []
    for mirror in mirrors:
        url = mirror + filename
        try:
            return download_url(url, root, filename, md5)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            errors.append(f"{url}: {getattr(error, 'reason', error)}")
    raise RuntimeError(f"Error downloading {filename}: every mirror failed ({'; '.join(errors)}). "
                       f"If this machine is offline, download the file elsewhere and copy it to {root}.")


def _is_within(directory: str, target: str) -> bool:
    directory, target = os.path.realpath(directory), os.path.realpath(target)
    return os.path.commonpath([directory, target]) == directory


def extract_archive(from_path: str, to_path: str | None = None, remove_finished: bool = False) -> str:
    """Extracts a .tar(.gz|.bz2|.xz), .tgz, .zip or single-file .gz archive; returns ``to_path``.

    Members that would land outside ``to_path`` (absolute paths, ``..``, links) are refused.
    """
    to_path = to_path or os.path.dirname(from_path)
    if from_path.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")):
        with tarfile.open(from_path) as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()) or not _is_within(to_path, os.path.join(to_path, member.name)):
                    raise RuntimeError(f"refusing to extract {member.name!r} from {from_path}: "
                                       f"not a plain file inside the target folder")
            tar.extractall(to_path)
    elif from_path.endswith(".zip"):
        with zipfile.ZipFile(from_path) as archive:
            for name in archive.namelist():
                if not _is_within(to_path, os.path.join(to_path, name)):
                    raise RuntimeError(f"refusing to extract {name!r} from {from_path}: outside the target folder")
            archive.extractall(to_path)
    elif from_path.endswith(".gz"):
        target = os.path.join(to_path, os.path.basename(from_path)[:-3])
        with gzip.open(from_path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    else:
        raise RuntimeError(f"extract_archive: unsupported archive type of {from_path}")
    if remove_finished:
        os.remove(from_path)
    return to_path
