"""A small LeNet-style classifier whose penultimate activation is the feature space of
genlab's domain FID/KID/precision-recall on 28x28 grey-scale data.

LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
recognition", Proc. IEEE 86(11), 1998 (doi:10.1109/5.726791): two convolution +
subsampling stages followed by fully connected layers.

What differs from the paper, all to train to >= 99.3 % (MNIST) / >= 92 % (Fashion-MNIST)
test accuracy in a few CPU minutes:
* ReLU instead of scaled tanh, max pooling instead of trainable average subsampling,
  5x5 convolutions padded to keep 28x28 (LeNet-5 used unpadded 32x32 inputs);
* batch normalization after every convolution and the hidden fully connected layer
  (Ioffe & Szegedy 2015, arXiv:1502.03167);
* one hidden fully connected layer (``hidden`` units) instead of two, dropout before
  the classifier (Srivastava et al. 2014, JMLR 15);
* no Gaussian-connection output layer: plain logits and cross-entropy.

The feature used by the metrics is ``features(x)``: the hidden layer's activation after
BatchNorm and ReLU (in eval mode), i.e. the input of the final linear classifier.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from genlab.errors import InputError


@dataclass
class LeNetConfig:
    in_channels: int = 1  # grey-scale input
    size: int = 28  # input height = width (two 2x2 poolings: must be divisible by 4)
    conv1: int = 32  # channels of the first 5x5 convolution
    conv2: int = 64  # channels of the second 5x5 convolution
    hidden: int = 128  # units of the penultimate layer: the feature dimension
    num_classes: int = 10
    dropout: float = 0.3  # before the classifier, training only

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.size, self.size)

    def validate(self) -> None:
        if self.size % 4:
            raise InputError(f"LeNet input size {self.size} must be divisible by 4 (two 2x2 poolings)")
        if min(self.conv1, self.conv2, self.hidden, self.num_classes, self.in_channels) < 1:
            raise InputError("LeNet channel, hidden and class counts must be >= 1")


class LeNet(nn.Module):
    """conv5-BN-ReLU-pool, conv5-BN-ReLU-pool, fc-BN-ReLU (features), dropout, fc (logits)."""

    def __init__(self, cfg: LeNetConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.body = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.conv1, 5, padding=2, bias=False),
            nn.BatchNorm2d(cfg.conv1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(cfg.conv1, cfg.conv2, 5, padding=2, bias=False),
            nn.BatchNorm2d(cfg.conv2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(cfg.conv2 * (cfg.size // 4) ** 2, cfg.hidden, bias=False),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(cfg.hidden, cfg.num_classes)

    @property
    def feature_dim(self) -> int:
        return self.cfg.hidden

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, hidden) penultimate activations (after ReLU)."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, num_classes) logits."""
        return self.classifier(self.dropout(self.features(x)))

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one forward pass (eval mode: dropout is the identity)."""
        h = self.features(x)
        return h, self.classifier(self.dropout(h))
