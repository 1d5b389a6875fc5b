"""Class labels as every entry point takes them: one label for a whole request, or one per image.

The sampler, the Python API, the evaluators and the class-conditional networks all check labels here,
so "what is a valid label" has one answer and one wording.
"""

from __future__ import annotations

import torch

from genlab.errors import InputError


def check_label_range(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``y`` unchanged if every label is in 0..num_classes-1; else an InputError saying the range."""
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise InputError(f"label out of range: labels must be in 0..{num_classes - 1}")
    return y


def class_labels(label, n: int, num_classes: int, device=None, who: str = "this model",
                 required: bool = False) -> torch.Tensor | None:
    """The (n,) int64 labels of a request for n images, checked; None when no label is given.

    Args:
        label: None, an int, or a tensor / sequence of one label or n labels.
        n: how many images the request is for (one label is repeated n times).
        num_classes: the model's number of classes; 0 for an unconditional model, which takes no label.
        device: where the labels go.
        who: the model, as messages name it.
        required: True when the caller cannot draw a label itself (None is then an error for a
            class-conditional model).
    """
    if label is None:
        if required and num_classes:
            raise InputError(f"{who} is class-conditional: give a label (--label K, or label= in Python)")
        return None
    if not num_classes:
        raise InputError(f"{who} is unconditional: drop --label (label= in Python)")
    y = torch.as_tensor(label, device=device).long().reshape(-1)
    if y.numel() == 1:
        y = y.expand(n)
    if y.numel() != n:
        raise InputError(f"give one label or {n} labels, not {y.numel()}")
    return check_label_range(y, num_classes)


def refuse_label(y: torch.Tensor | None, who: str) -> None:
    """The check of an unconditional model's ``y`` argument.

    Every model with an encoder or a decoder takes an optional label in ``encode`` / ``decode`` (and a
    generator in ``generate``), so callers pass the labels they have (None for an unconditional model)
    without asking which kind of model they hold; an unconditional one accepts only None.
    """
    if y is not None:
        raise InputError(f"{who} is unconditional: it takes no label (drop --label, or label= in Python)")


def batch_labels(y: torch.Tensor | None, batch: int, who: str) -> torch.Tensor:
    """A class-conditional network's labels for a batch: (batch,) from one label or one per image.

    No range check here: it would synchronize the device on every training step (the embedding
    lookup fails on a bad label anyway); requests from users go through ``class_labels``.
    """
    if y is None:
        raise InputError(f"{who} is class-conditional: pass labels (batch['y'] or --label)")
    return y.expand(batch) if y.dim() == 0 else y
