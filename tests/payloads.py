"""Files that run code when a careless loader opens them; each writes a harmless marker file.

A test hands one to a genlab loader and asserts that the marker is absent afterwards
(and that the loader said clearly what it refused). The pickles reuse ``RunsCode``
(``os.system("touch MARKER")``); the TorchScript archive writes its marker from
``__setstate__``, which ``torch.jit.load`` runs while loading, before any forward call.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import torch

from data_helpers import RunsCode


def code_pickle(marker: Path) -> bytes:
    """A protocol-2 pickle of a dict whose value calls ``touch MARKER`` when unpickled."""
    return pickle.dumps({"fc.weight": RunsCode(f"touch {marker}")}, protocol=2)


def torch_save_payload(path: Path, marker: Path) -> Path:
    """A ``torch.save`` archive (zip + pickle) that touches ``marker`` under ``weights_only=False``."""
    torch.save({"fc.weight": RunsCode(f"touch {marker}")}, path)
    return path


class _WritesOnLoad(torch.nn.Module):
    """Compiled to TorchScript; loading it maps ``path`` into memory shared with the file and fills it."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.written = 0

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool]:
        return self.path, self.training

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        out = torch.from_file(self.path, True, 4, dtype=torch.uint8)  # creates the file
        out.fill_(88)
        self.written = int(out.sum().item())  # used, so the compiler keeps the write


def torchscript_payload(path: Path, marker: Path) -> Path:
    """A TorchScript archive that writes ``marker`` when ``torch.jit.load`` reads it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.script is deprecated, still works
        torch.jit.script(_WritesOnLoad(str(marker))).save(str(path))
    assert not marker.exists()  # building it runs nothing; only loading does
    return path
