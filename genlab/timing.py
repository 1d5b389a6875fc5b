"""How long something will take, in the words genlab prints before and during long work
(training, evaluation): one formatting rule for every estimate, at the bottom of the import layers."""

from __future__ import annotations


def duration_text(seconds: float) -> str:
    """'45 s', '12 min' or '1.5 h': whole seconds below 90 s, whole minutes below 90 minutes."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
