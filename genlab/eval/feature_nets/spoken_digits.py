"""A small spoken-digit classifier whose penultimate activation is the feature space of genlab's audio metrics
(classifier agreement and a Frechet distance of generated FSDD clips).

Input: model input (B, 1, L) in [0, 1], i.e. mu-law codes / 255 as the data and the samplers give them.
The codes are decoded to a waveform (``genlab.nn.audio``), turned into a log-magnitude spectrogram
(Hann-windowed STFT, ``n_fft`` samples, hop ``n_fft / 2``; log(1 + 100 |S|)), and read by a small 2-D
convolution network (three conv3-BN-ReLU-pool stages, global average pooling, a hidden layer: the
feature, then the logits), in the spirit of the small-footprint keyword-spotting CNNs of Sainath &
Parada 2015 (Interspeech, "Convolutional neural networks for small-footprint keyword spotting").
Global average pooling over time and frequency makes the feature independent of the clip length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.errors import InputError
from genlab.nn.audio import model_input_to_waveform


@dataclass
class SpokenDigitConfig:
    length: int = 4000  # samples per clip it is trained on (data.clip_samples)
    n_fft: int = 256  # STFT window (32 ms at 8 kHz)
    conv1: int = 8
    conv2: int = 16
    conv3: int = 32
    hidden: int = 64  # the feature dimension
    num_classes: int = 10
    dropout: float = 0.3  # before the classifier, training only

    def validate(self) -> None:
        if min(self.conv1, self.conv2, self.conv3, self.hidden, self.num_classes) < 1 or self.n_fft < 8:
            raise InputError("spoken-digit network sizes must be >= 1 and n_fft >= 8")

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (1, self.length)


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.MaxPool2d(2))


class SpokenDigitNet(nn.Module):
    """log-spectrogram -> 3 x (conv3-BN-ReLU-pool) -> global average -> fc-BN-ReLU (features) -> dropout, fc."""

    def __init__(self, cfg: SpokenDigitConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.body = nn.Sequential(_stage(1, cfg.conv1), _stage(cfg.conv1, cfg.conv2), _stage(cfg.conv2, cfg.conv3))
        self.hidden = nn.Sequential(nn.Linear(cfg.conv3, cfg.hidden, bias=False), nn.BatchNorm1d(cfg.hidden),
                                    nn.ReLU())
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_classes)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, L) codes / 255 -> (B, 1, n_fft / 2 + 1, frames) log magnitudes."""
        wave = model_input_to_waveform(x[:, 0]).to(self.window.dtype)
        spec = torch.stft(wave, self.cfg.n_fft, self.cfg.n_fft // 2, window=self.window, return_complex=True)
        return torch.log1p(100 * spec.abs())[:, None]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.hidden(self.body(self.spectrogram(x)).mean(dim=(2, 3)))

    def features_and_logits(self, x: torch.Tensor):
        f = self.features(x)
        return f, self.classifier(f)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))
