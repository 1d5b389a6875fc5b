"""Mu-law companding of audio: 16-bit waveforms <-> 256 levels (ITU-T G.711; WaveNet, arXiv:1609.03499, Sec. 2.2).

f(x) = sign(x) ln(1 + mu |x|) / ln(1 + mu) for x in [-1, 1] spends the 256 levels where speech has its
mass (near zero), so a 256-way softmax over the codes models audio far better than one over linearly
quantized samples. Codes are 0..255 with silence at 128; as model input a code k is k / 255, exactly
like an 8-bit pixel, so the discrete heads of the image models apply unchanged.
"""

from __future__ import annotations

import math

import torch

MU = 255
LEVELS = MU + 1


def pcm16_to_float(samples: torch.Tensor) -> torch.Tensor:
    """int16 PCM -> float in [-1, 1)."""
    return samples.to(torch.float64) / 32768.0


def mu_law_encode(x: torch.Tensor) -> torch.Tensor:
    """Waveform in [-1, 1] (clipped) -> uint8 codes 0..255 (round to the nearest level)."""
    x = x.to(torch.float64).clamp(-1.0, 1.0)
    f = torch.sign(x) * torch.log1p(MU * x.abs()) / math.log1p(MU)
    return torch.floor((f + 1) / 2 * MU + 0.5).clamp_(0, MU).to(torch.uint8)


def mu_law_decode(codes: torch.Tensor) -> torch.Tensor:
    """Codes 0..255 (any integer or float dtype holding whole numbers) -> waveform in [-1, 1], float32."""
    f = 2 * codes.to(torch.float64) / MU - 1
    return (torch.sign(f) * torch.expm1(f.abs() * math.log1p(MU)) / MU).to(torch.float32)


def model_input_to_codes(x: torch.Tensor) -> torch.Tensor:
    """Model input k / 255 in [0, 1] -> int64 codes 0..255."""
    return (x * MU).round().long().clamp_(0, MU)


def model_input_to_waveform(x: torch.Tensor) -> torch.Tensor:
    """Model input (..., L) in [0, 1] (mu-law codes / 255) -> waveform in [-1, 1], float32."""
    return mu_law_decode(model_input_to_codes(x))
