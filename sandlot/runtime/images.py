"""A checkpoint's image directory: written whole or not at all, and checked before a restore.

CRIU writes its images into ``<dir>.partial``; `seal` then lists every file with its size and
XXH3-64 digest in ``manifest.json``, fsyncs the manifest, renames the directory into place
and fsyncs its parent. A directory without the suffix is therefore complete, and `check` proves
that its files are still the ones CRIU wrote before CRIU reads them (a disk that lost the
tail of an image after a power cut, a copy from an object store that stopped halfway): a
damaged checkpoint is refused with the file named, instead of a restore that fails deep in
CRIU or, worse, processes that run on from corrupt memory.

Why XXH3: the check guards against accidents, not tampering (only root writes here), and it
is on the critical path of every resume. Here XXH3-64 digests ~20 GB/s, zlib's CRC-32 ~5 and
SHA-256 ~1.7: a 55 MiB checkpoint costs 2.5 ms instead of 10 (of a resume of ~90). The image
files themselves are not fsynced: a daemon killed at any point leaves them in the page cache,
complete, and a power cut that tears one is what `check` is for.
"""

from __future__ import annotations

import json
import mmap
import os
from pathlib import Path

import xxhash

from sandlot.runtime import errors

__all__ = ["MANIFEST", "check", "fsync_dir", "partial", "seal"]

MANIFEST = "manifest.json"
_FORMAT = 1
_MAPPED = 1 << 20
"""Files from this size up are hashed in place (mapped) rather than read: most of a
checkpoint's ~100 files are a few hundred bytes, its memory one large file."""


def partial(image_dir: Path) -> Path:
    """Where the images of ``image_dir`` are written before `seal` moves them there."""
    return image_dir.with_name(image_dir.name + ".partial")


def seal(image_dir: Path, *, group: int) -> None:
    """Make the images in ``partial(image_dir)`` private, list them in the manifest and move
    the directory to ``image_dir``, durably.

    Private is mode 0640 (the directory 0710), owner root, group ``group``: the host gid that
    root inside a user-namespaced sandbox maps to (0 without user namespaces, and then only
    root reads them). Root-only (0600) is not possible there: CRIU restores each process from
    inside the sandbox's user namespace, as that process, and it opens its images then (the
    namespaces', ``mm``, ``fdinfo``, ``pagemap`` and ``pages`` images, the tmpfs archives) with
    the sandbox root's credentials, which hold no capability over host-root files: with 0600
    the restore fails with EACCES. Nobody else (no other host user) may read or enter them.
    """
    source = partial(image_dir)
    os.chown(source, 0, group)
    os.chmod(source, 0o710)
    files = {}
    for path in sorted(source.iterdir()):
        os.chown(path, 0, group)
        os.chmod(path, 0o640)
        files[path.name] = {"size": path.stat().st_size, "xxh3": _digest(path)}
    manifest = source / MANIFEST
    fd = os.open(manifest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"format": _FORMAT, "files": files}, f)
        f.flush()
        os.fsync(f.fileno())
    os.rename(source, image_dir)
    fsync_dir(image_dir.parent)


def check(image_dir: Path) -> None:
    """Raise `errors.RuntimeDriverError` naming what is wrong unless every file the manifest
    of ``image_dir`` lists is there with its size and digest."""
    try:
        manifest = json.loads((image_dir / MANIFEST).read_text())
        if manifest.get("format") != _FORMAT:
            raise ValueError(f"format {manifest.get('format')!r}, expected {_FORMAT}")
        listed = {name: (int(f["size"]), int(f["xxh3"])) for name, f in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise errors.RuntimeDriverError(f"checkpoint {image_dir} has no readable manifest: {exc}") from exc
    for name, (size, digest) in listed.items():
        path = image_dir / name
        try:
            found = path.stat().st_size
            if found != size:
                problem = f"{found} bytes, the manifest says {size}"
            elif _digest(path) != digest:
                problem = "its digest is not the manifest's"
            else:
                continue
        except OSError as exc:
            problem = exc.strerror or str(exc)
        raise errors.RuntimeDriverError(f"checkpoint {image_dir} is damaged: {name}: {problem}")


def _digest(path: Path) -> int:
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size < _MAPPED:
            return xxhash.xxh3_64_intdigest(f.read())
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return xxhash.xxh3_64_intdigest(data)


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (a rename into it) survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
