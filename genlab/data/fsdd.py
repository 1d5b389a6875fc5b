"""The Free Spoken Digit Dataset (FSDD): 3,000 recordings of the digits 0-9 by 6 speakers, 8 kHz mono.

Source: github.com/Jakobovski/free-spoken-digit-dataset, release v1.0.10 (licence CC BY-SA 4.0), folder
``recordings/`` with files ``{digit}_{speaker}_{index}.wav`` (16-bit PCM, 8,000 Hz, 1,148 to 18,262 samples).
The dataset's README fixes the split: recordings with index 0-4 are the test set (300 files), 5-49 the
training set (2,700).

What a model sees: every recording is mu-law companded to 256 levels (``genlab.nn.audio``), then cut to
its first ``data.clip_samples`` samples, or padded at the end with the silence code (128) when shorter:
a (1, clip_samples) uint8 signal, labelled with its digit, with the speaker (index into ``SPEAKERS``)
carried as the batch key "speaker". Padding is part of the data: likelihoods count the padded silence.

Verification: the dataset publishes no checksum and GitHub's tag archives are generated on request (not
byte-stable), so genlab checks the content instead: the sha256 of the ``sha256sum`` listing of every
recording in path order (the same number ``find recordings -name '*.wav' | sort | xargs sha256sum |
sha256sum`` prints inside ``fsdd/``). ``data.download=true`` fetches the release archive, unpacks only
the recordings into a temporary folder beside the final one, verifies them, then moves them into place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.request
import wave
from pathlib import Path

import numpy as np
import torch

from genlab.data.base import ImageSet
from genlab.data.catalog import Dataset, DatasetInfo
from genlab.data.download import data_root
from genlab.data.errors import HOW_TO_FIX, DatasetError, describe, parsing, unreadable_file
from genlab.nn.audio import mu_law_encode, pcm16_to_float
from genlab.nn.spec import DataSpec
from genlab.registry import DATASETS

VERSION = "v1.0.10"
ARCHIVE_URLS = (f"https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/{VERSION}.tar.gz",)
TREE_SHA256 = "04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"
SAMPLE_RATE = 8000
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")
DIGITS, PER_SPEAKER, TEST_INDICES = 10, 50, range(5)  # 50 takes of each digit per speaker; takes 0-4 are test
N_FILES = DIGITS * len(SPEAKERS) * PER_SPEAKER
SILENCE = 128  # mu-law code of 0.0
NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")
_verified: dict[tuple, bool] = {}  # this process's verified trees: (folder, names, sizes, mtimes) -> True
_parsed: dict[tuple, tuple] = {}  # (tree key, split, length) -> (codes, labels, speakers): parse a split once


def recording_files(folder: Path) -> list[Path]:
    """The official recordings in ``folder`` in path order (the order the tree checksum uses)."""
    return sorted((p for p in folder.glob("*.wav") if NAME.fullmatch(p.name)), key=lambda p: p.name)


def tree_sha256(folder: Path) -> str:
    """sha256 of the lines "<sha256>  recordings/<name>\\n" of every recording, in path order."""
    listing = hashlib.sha256()
    for path in recording_files(folder):
        listing.update(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  recordings/{path.name}\n".encode())
    return listing.hexdigest()


def _fix_lines(folder: Path) -> str:
    return (f"  expected: {N_FILES} recordings {{digit}}_{{speaker}}_{{index}}.wav of FSDD {VERSION} in {folder} "
            f"(tree sha256 {TREE_SHA256}, see genlab/data/fsdd.py)\n  official archive: {ARCHIVE_URLS[0]}\n  "
            + HOW_TO_FIX)


def verify_recordings(folder: Path, trust_memo: bool = True) -> tuple:
    """DatasetError unless ``folder`` holds exactly the official recordings (count and tree checksum).

    Returns the key of this exact tree (names, sizes, mtimes), under which it was verified.
    """
    files = recording_files(folder) if folder.is_dir() else []
    if not files:
        raise DatasetError(f"FSDD recordings not found in {folder}\n" + _fix_lines(folder), folder, kind="missing")
    key = (str(folder.resolve()), *((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files))
    if trust_memo and _verified.get(key):
        return key
    if len(files) != N_FILES:
        raise DatasetError(f"{folder} holds {len(files)} FSDD recordings, not {N_FILES}\n" + _fix_lines(folder),
                           folder, kind="corrupt")
    actual = tree_sha256(folder)
    if actual != TREE_SHA256:
        raise DatasetError(f"the FSDD recordings in {folder} are not the official {VERSION} files (tree sha256 "
                           f"{actual}); delete or replace the folder\n" + _fix_lines(folder), folder, kind="corrupt")
    _verified[key] = True
    return key


def fetch_recordings(folder: Path) -> None:
    """Download the release archive and put its verified ``recordings/`` at ``folder`` (atomic rename)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in ARCHIVE_URLS:
        work = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".fsdd-download."))
        try:
            archive, unpacked = work / "archive.tar.gz", work / "recordings"
            with urllib.request.urlopen(url, timeout=60) as response, open(archive, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
            unpacked.mkdir()
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:  # only plain files named like a recording, in a recordings/ folder
                    parts = Path(member.name).parts
                    if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" and NAME.fullmatch(parts[-1]):
                        (unpacked / parts[-1]).write_bytes(tar.extractfile(member).read())
            verify_recordings(unpacked, trust_memo=False)
            os.replace(unpacked, folder)
            return
        except (OSError, ValueError, tarfile.TarError, DatasetError) as err:
            failures.append(f"{url}: {describe(err).splitlines()[0]}")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    raise DatasetError("could not download the FSDD recordings:\n" + "\n".join(f"  {f}" for f in failures)
                       + "\n" + _fix_lines(folder), folder)


def read_wav(path: Path) -> torch.Tensor:
    """A 16-bit mono 8 kHz WAV -> its int16 samples (L,); DatasetError (one line) if it is anything else."""
    with parsing(path):
        with wave.open(str(path), "rb") as w:
            params = w.getparams()
            if (params.nchannels, params.sampwidth, params.framerate) != (1, 2, SAMPLE_RATE):
                raise unreadable_file(path, f"{params.nchannels} channel(s), {8 * params.sampwidth}-bit, "
                                            f"{params.framerate} Hz; FSDD files are mono 16-bit {SAMPLE_RATE} Hz")
            frames = w.readframes(params.nframes)
        if len(frames) != 2 * params.nframes or params.nframes == 0:
            raise unreadable_file(path, f"the header promises {params.nframes} samples, the file holds "
                                        f"{len(frames) // 2}")
    return torch.from_numpy(np.frombuffer(frames, dtype="<i2").astype(np.int16))


def clip_codes(samples: torch.Tensor, length: int) -> torch.Tensor:
    """int16 samples (L,) -> mu-law codes (length,) uint8: the first ``length``, silence-padded at the end."""
    codes = mu_law_encode(pcm16_to_float(samples[:length]))
    return torch.cat([codes, torch.full((length - len(codes),), SILENCE, dtype=torch.uint8)])


def parse_name(path: Path) -> tuple[int, int, int]:
    """"7_theo_3.wav" -> (digit 7, speaker index of theo, take 3)."""
    digit, speaker, take = NAME.fullmatch(path.name).groups()
    if speaker not in SPEAKERS:
        raise unreadable_file(path, f"unknown speaker {speaker!r}; FSDD {VERSION} has {', '.join(SPEAKERS)}")
    return int(digit), SPEAKERS.index(speaker), int(take)


@DATASETS.register("fsdd")
class FSDD(Dataset):
    """Free Spoken Digit Dataset v1.0.10: (1, data.clip_samples) mu-law 8-bit signals at 8 kHz, 10 digits."""

    info = DatasetInfo(
        name="fsdd",
        description=(f"Free Spoken Digit Dataset {VERSION} (Jakobovski; CC BY-SA 4.0): 3,000 recordings of the "
                     "digits 0-9 by 6 speakers, 8 kHz, mu-law 8-bit, cut/padded to data.clip_samples samples; "
                     "official split: takes 0-4 test"),
        shape=None, bits=8, classes=DIGITS,
        splits={"train": N_FILES - DIGITS * len(SPEAKERS) * len(TEST_INDICES),
                "test": DIGITS * len(SPEAKERS) * len(TEST_INDICES)},
        folder="fsdd",
    )

    def folder(self, cfg) -> Path:
        return data_root(cfg) / self.info.folder / "recordings"

    def load(self, split: str, cfg) -> ImageSet:
        folder = self.folder(cfg)
        if cfg.download and not recording_files(folder):
            fetch_recordings(folder)
        length = cfg.clip_samples
        key = (verify_recordings(folder), split, length)
        if key not in _parsed:  # reading 3,000 WAVs is the slow part: once per process and split
            clips, labels, speakers = [], [], []
            for path in recording_files(folder):
                digit, speaker, take = parse_name(path)
                if (take in TEST_INDICES) != (split == "test"):
                    continue
                clips.append(clip_codes(read_wav(path), length))
                labels.append(digit)
                speakers.append(speaker)
            _parsed[key] = (torch.stack(clips).unsqueeze(1), torch.tensor(labels), torch.tensor(speakers))
        codes, labels, speakers = (t.clone() for t in _parsed[key])
        spec = DataSpec(channels=1, height=1, width=length, bits=8, num_classes=DIGITS, sample_rate=SAMPLE_RATE)
        note = (f"FSDD {VERSION} official split (takes 0-4 test); mu-law 8-bit; first {length} samples "
                f"({length / SAMPLE_RATE:.3f} s), shorter recordings padded with silence (code {SILENCE})")
        return self.imageset(split, codes, labels, "scale", note, spec, extras={"speaker": speakers})

    def check(self, cfg) -> dict:
        folder = self.folder(cfg)
        try:
            verify_recordings(folder, trust_memo=False)
            status, message = "ok", f"{N_FILES} recordings verified (tree sha256)"
        except DatasetError as err:
            status, message = ("corrupt" if err.kind == "corrupt" else "missing"), str(err)
        return dict(name=self.info.name, status=status, path=str(folder), message=message)
