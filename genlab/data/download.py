"""Where dataset files live, how they are verified, and how missing ones are fetched.

A dataset file is described by a ``DataFile``: its path under the data root,
the checksum of the official download and the official URL (mirrors after it).
``ensure_file`` finds a local copy whose checksum is right (also accepting the
gunzipped form of a ``.gz`` download, or the gzipped form of a plain one, since
users often have either), and only when ``cfg.download`` is set fetches the
official file with urllib into a ``.part`` file in the same folder, checks it,
and moves it into place with ``os.replace`` so a killed download never leaves a
half file under the official name.

Hashing is the slow part of loading a small dataset, so a successful check is
remembered in ``.genlab-checksums.json`` beside the file. An entry vouches only for
the file genlab itself hashed: it binds the checksum to the file's resolved path,
device, inode, size, mtime and ctime (which no user can set: writing the file, or
restoring its mtime with ``touch``/``utime``, moves it), and it carries an HMAC under a
per-user key kept outside the data root (``$GENLAB_CACHE/checksum-key``, default
``~/.cache/genlab``), so an entry written by anyone else (a forged entry) is ignored
and the file hashed again. A file changed in the same clock tick as its hash could
keep its ctime, so files changed less than ``FRESH_NS`` ago are not cached at all.
``genlab data check`` never uses the cache: it always hashes. No stamp is written in
a folder without write permission bits (a shared data folder), even by root, nor on a
read-only file system; a per-process memo still avoids hashing a file twice in one
run. genlab never needs write access to the data root.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import os
import tempfile
import time
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

from genlab.data.errors import DatasetError, corrupt_file, describe, missing_file, unreadable_file
from genlab.errors import InputError

log = logging.getLogger("genlab.data")

STAMP_NAME = ".genlab-checksums.json"
_CHUNK = 1 << 20
_GZIP_ERRORS = (OSError, EOFError, zlib.error)  # BadGzipFile is an OSError
FRESH_NS = 2_000_000_000  # a file changed this recently (ns) is not cached: its ctime may not move again
_memo: dict[str, tuple[tuple, str]] = {}  # resolved path -> (stat key, verified checksum)


def data_root(cfg) -> Path:
    """The folder holding one subfolder per dataset.

    ``cfg.root`` if set, else ``$GENLAB_DATA``, else ``~/.cache/genlab/data``.
    """
    root = getattr(cfg, "root", "") or os.environ.get("GENLAB_DATA", "") or "~/.cache/genlab/data"
    return Path(root).expanduser()


@dataclass(frozen=True)
class DataFile:
    """One official file of a dataset and the local forms of it that are accepted.

    Attributes:
        path: where it lives under the data root, e.g. "mnist/train-images-idx3-ubyte.gz".
        checksum: "md5:<hex>" or "sha256:<hex>" of the official download's bytes.
        urls: the official URL first, then mirrors, tried in order.
        content_checksum: for a ``.gz`` download, the checksum of its decompressed bytes,
            so that an already-gunzipped copy is accepted too.
    """

    path: str
    checksum: str
    urls: tuple[str, ...] = ()
    content_checksum: str = ""

    def forms(self, root: Path) -> list["LocalForm"]:
        """The accepted local files, official form first."""
        official = root / self.path
        if self.path.endswith(".gz"):
            forms = [LocalForm(official, True, self.checksum, False)]
            if self.content_checksum:
                forms.append(LocalForm(official.with_suffix(""), False, self.content_checksum, False))
            return forms
        # A plain official file may be kept gzipped; its checksum then applies to the content.
        return [LocalForm(official, False, self.checksum, False), LocalForm(Path(f"{official}.gz"), True, self.checksum, True)]


@dataclass(frozen=True)
class LocalForm:
    """A file on disk that may hold a ``DataFile``.

    ``gzipped``: whether to gunzip it before parsing. ``of_content``: whether
    ``checksum`` applies to the gunzipped bytes rather than to the file's bytes.
    """

    path: Path
    gzipped: bool
    checksum: str
    of_content: bool


def split_checksum(checksum: str) -> tuple[str, str]:
    """"md5:abc" -> ("md5", "abc"); only md5 and sha256 are used by official sources."""
    algo, _, digest = checksum.partition(":")
    if algo not in ("md5", "sha256") or not digest:
        raise InputError(f"checksum {checksum!r} is not of the form md5:<hex> or sha256:<hex>")
    return algo, digest.lower()


def hash_bytes(data: bytes, algo: str) -> str:
    """"algo:<hex>" of a bytes object already in memory."""
    return f"{algo}:{hashlib.new(algo, data).hexdigest()}"


def hash_file(path: Path, algo: str, gunzip: bool = False) -> str:
    """"algo:<hex>" of a file's bytes (or of its gunzipped content), read in 1 MiB chunks."""
    h = hashlib.new(algo)
    opener = gzip.open if gunzip else open
    with opener(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return f"{algo}:{h.hexdigest()}"


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file's bytes (checkpoint and export manifests, handed feature-net weights)."""
    return hash_file(Path(path), "sha256").partition(":")[2]


def cache_home() -> Path:
    """genlab's per-user cache folder: $GENLAB_CACHE, else ~/.cache/genlab."""
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab").expanduser()


def _stat_key(path: Path) -> tuple:
    """What identifies this exact version of the file: (path, dev, inode, size, mtime_ns, ctime_ns)."""
    st = path.stat()
    return str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _stamp_key(create: bool) -> bytes | None:
    """The user's secret for stamp HMACs (created on first use when ``create``); None if unavailable."""
    path = cache_home() / "checksum-key"
    try:
        return path.read_bytes()
    except OSError:
        if not create:
            return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # private: it signs stamps
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(32))
        return path.read_bytes()
    except FileExistsError:  # another process created it first
        return path.read_bytes()
    except OSError:
        return None  # no writable home: no cache, every file is hashed


def _stamp_entry(key: tuple, checksum: str, secret: bytes) -> dict:
    fields = dict(zip(("path", "dev", "ino", "size", "mtime_ns", "ctime_ns"), key), checksum=checksum)
    mac = hmac.new(secret, json.dumps(fields, sort_keys=True).encode(), hashlib.sha256).hexdigest()
    return {**fields, "hmac": mac}


def is_stamped(path: Path, checksum: str) -> bool:
    """True if genlab itself verified this exact file (same path, inode, size, mtime, ctime) against ``checksum``."""
    key = _stat_key(path)
    if _memo.get(key[0]) == (key, checksum):
        return True
    secret = _stamp_key(create=False)
    if secret is None:
        return False
    try:
        entry = json.loads((path.parent / STAMP_NAME).read_text()).get(path.name)
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(entry, dict) or not isinstance(entry.get("hmac"), str):
        return False  # an entry of an older genlab, or one not written by genlab
    expected = _stamp_entry(key, checksum, secret)
    ok = entry.keys() == expected.keys() and hmac.compare_digest(entry["hmac"], expected["hmac"]) and entry == expected
    if ok:
        _memo[key[0]] = (key, checksum)
    return ok


def stamp(path: Path, checksum: str) -> None:
    """Record that ``path`` as it is now has ``checksum`` (best effort, atomic write)."""
    key = _stat_key(path)
    _memo[key[0]] = (key, checksum)
    stamp_path = path.parent / STAMP_NAME
    folder_mode = path.parent.stat().st_mode
    # A folder without write bits is read-only on purpose (a shared data folder), even to root.
    if not folder_mode & 0o222 or not os.access(path.parent, os.W_OK):
        return
    if time.time_ns() - max(key[4], key[5]) < FRESH_NS:
        return  # a change later in the same clock tick could leave mtime and ctime as they are
    secret = _stamp_key(create=True)
    if secret is None:
        return
    try:
        try:
            stamps = json.loads(stamp_path.read_text())
            stamps = stamps if isinstance(stamps, dict) else {}
        except (OSError, ValueError):
            stamps = {}
        stamps[path.name] = _stamp_entry(key, checksum, secret)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=STAMP_NAME, suffix=".part")
        with os.fdopen(fd, "w") as f:
            json.dump(stamps, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; other users of the folder may read it
        os.replace(tmp, stamp_path)
    except OSError:
        pass  # read-only folder: the in-process memo still applies


def _gunzip(form: LocalForm, raw: bytes, spec: DataFile) -> bytes:
    try:
        return gzip.decompress(raw)
    except _GZIP_ERRORS as err:
        if form.of_content:  # the checksum cannot even be computed: the file is corrupt
            raise corrupt_file(form.path, form.checksum, f"it cannot be gunzipped ({describe(err)})", spec.urls) from None
        raise unreadable_file(form.path, f"not a valid gzip file ({describe(err)})", form.checksum, spec.urls) from None


def _verify(form: LocalForm, spec: DataFile, read: bool, trust_cache: bool = True) -> bytes | None:
    """Check one local form against its checksum; return its (gunzipped) bytes when ``read``."""
    stamped = trust_cache and is_stamped(form.path, form.checksum)
    algo, _ = split_checksum(form.checksum)
    actual, content = form.checksum, None
    if read:
        try:
            raw = form.path.read_bytes()
        except OSError as err:
            raise unreadable_file(form.path, describe(err), form.checksum, spec.urls) from None
        if form.of_content:
            content = _gunzip(form, raw, spec)
            actual = actual if stamped else hash_bytes(content, algo)
        else:
            actual = actual if stamped else hash_bytes(raw, algo)
            # Gunzip only once the container is known good, so corruption reads as corruption.
            content = (_gunzip(form, raw, spec) if form.gzipped else raw) if actual == form.checksum else None
    elif not stamped:
        try:
            actual = hash_file(form.path, algo, gunzip=form.of_content)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:
            actual = f"it cannot be gunzipped ({describe(err)})"
        except OSError as err:
            raise unreadable_file(form.path, describe(err), form.checksum, spec.urls) from None
    if actual != form.checksum:
        raise corrupt_file(form.path, form.checksum, actual, spec.urls)
    if not stamped:
        stamp(form.path, form.checksum)
    return content


def _find(spec: DataFile, root: Path, download: bool, read: bool,
          trust_cache: bool = True) -> tuple[LocalForm, bytes | None]:
    forms = spec.forms(root)
    corrupt: DatasetError | None = None
    for form in forms:
        if not form.path.is_file():
            continue
        try:
            return form, _verify(form, spec, read, trust_cache)
        except DatasetError as err:
            if err.kind != "corrupt":
                raise
            corrupt = corrupt or err  # an accepted alternative form may still be fine
    if download and spec.urls:
        fetch(spec, root)
        return _find(spec, root, download=False, read=read)
    if corrupt is not None:
        raise corrupt
    raise missing_file(forms[0].path, spec.checksum, spec.urls, also=[f.path for f in forms[1:]])


def ensure_file(spec: DataFile, root: Path, download: bool = False, trust_cache: bool = True) -> LocalForm:
    """A verified local copy of ``spec``, downloading it first if allowed and needed.

    Args:
        spec: the file wanted.
        root: the data root (see ``data_root``).
        download: fetch the official file when no valid local copy exists.
        trust_cache: accept a checksum stamp of this exact file instead of hashing it
            (``genlab data check`` passes False: a check always hashes).
    Returns:
        The local form found; parse ``form.path`` (gunzipping if ``form.gzipped``).
    Raises:
        DatasetError: missing (and not downloadable), corrupt, or the download failed.
    """
    return _find(spec, root, download, read=False, trust_cache=trust_cache)[0]


def read_verified(spec: DataFile, root: Path, download: bool = False) -> tuple[Path, bytes]:
    """Like ``ensure_file`` but also return the file's (gunzipped) bytes, reading the file once."""
    form, content = _find(spec, root, download, read=True)
    return form.path, content


def fetch(spec: DataFile, root: Path) -> Path:
    """Download the official file to ``root / spec.path`` atomically, trying each URL in order."""
    dest = root / spec.path
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create the dataset folder {dest.parent}: {describe(err)}", dest) from None
    algo, _ = split_checksum(spec.checksum)
    failures = []
    for url in spec.urls:
        log.info("downloading %s -> %s", url, dest)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        try:
            h = hashlib.new(algo)
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as response:
                while chunk := response.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            actual = f"{algo}:{h.hexdigest()}"
            if actual != spec.checksum:
                failures.append(f"{url}: wrong checksum ({actual})")
                continue
            os.replace(tmp, dest)
            stamp(dest, spec.checksum)
            return dest
        except (OSError, ValueError) as err:  # URLError and HTTPError are OSErrors
            failures.append(f"{url}: {describe(err)}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    lines = [f"could not download {dest.name}:", *(f"  {f}" for f in failures)]
    lines += [f"  expected {spec.checksum.replace(':', ': ', 1)}", f"  put the official file in: {dest.parent}",
              "  (download it by hand from the URL above, or use --data-root DIR / GENLAB_DATA=DIR "
              "to point at a folder that has it)"]
    raise DatasetError("\n".join(lines), dest, spec.checksum)
