"""The two recurrent layers of PixelRNN and the skew that makes diagonals into columns.

van den Oord, Kalchbrenner & Kavukcuoglu 2016, "Pixel Recurrent Neural Networks"
(arXiv:1601.06759), Sections 3.1-3.3. Both layers are LSTMs whose gates
[o, f, i, g] = sigma(K_ss * h_prev + K_is * x) are the sum of an input-to-state
convolution over the layer's input features and a state-to-state convolution
over the previous hidden state; c = f * c_prev + i * g and h = o * tanh(c).
Each layer is residual (Section 3.3): its h-channel output goes through a 1x1
convolution back to the 2h input features and is added to them.

* Row LSTM: the image is processed one row at a time, every row in parallel over
  its columns. Input-to-state: a 1x3 type-B masked convolution along the row
  (columns j - 1 and j, the centre colour-masked); state-to-state: a 1x3
  convolution over the previous row's hidden state (columns j - 1 .. j + 1). The
  receptive field is a triangle above the pixel.
* Diagonal BiLSTM: the input map is skewed (row i shifted right by i) so that a
  diagonal of the image is a column of the skewed map, then processed column by
  column: input-to-state a 1x1 type-B convolution, state-to-state a 2x1 convolution
  over the previous column, which reaches the pixels left of and above the current
  one. The right-to-left direction runs on the mirrored map; its output is shifted
  down one row before the two are added, so that pixel (i, j) receives it from row
  i - 1 only and never sees a later pixel of its own row. The receptive field is the
  whole past.

Colour data: the hidden units, gates and features are split into colour groups
(``genlab.nn.masked.channel_groups``) and only the input-to-state centre tap is
colour-masked; state-to-state inputs come from earlier pixels, which every colour
may see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genlab.nn.masked import MaskedConv2d, causal_mask, channel_groups, down_shift


def skew(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W + H - 1): row i shifted right by i, zeros elsewhere."""
    H = x.shape[2]
    return torch.stack([F.pad(row, (i, H - 1 - i)) for i, row in enumerate(x.unbind(2))], dim=2)


def unskew(x: torch.Tensor, width: int) -> torch.Tensor:
    """Inverse of ``skew``: (B, C, H, width + H - 1) -> (B, C, H, width)."""
    return torch.stack([row[..., i : i + width] for i, row in enumerate(x.unbind(2))], dim=2)


def lstm_cell(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """gates (B, 4h, ...) laid out [o, f, i, g] and cell (B, h, ...) -> new (h, c)."""
    o, f, i, g = gates.chunk(4, dim=1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


class _Residual(nn.Module):
    """The parts both layers share: colour groups and the 1x1 residual projection h -> features."""

    def __init__(self, features: int, hidden: int, groups: int):
        super().__init__()
        self.hidden = hidden
        self.feature_groups = channel_groups(features, groups)
        self.hidden_groups = channel_groups(hidden, groups)
        self.gate_groups = self.hidden_groups.repeat(4)  # every gate of a unit is in the unit's group
        self.project = MaskedConv2d.raster(hidden, features, 1, "B", self.hidden_groups, self.feature_groups)


class RowLSTM(_Residual):
    """Row LSTM layer (Section 3.1), residual: (B, F, H, W) -> (B, F, H, W)."""

    def __init__(self, features: int, hidden: int, groups: int = 1):
        super().__init__(features, hidden, groups)
        mask = causal_mask(self.gate_groups, self.feature_groups, (1, 3), (0, 1), "B")
        self.input_to_state = MaskedConv2d(features, 4 * hidden, mask, (1, 1, 0, 0))
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 3, padding=1)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero (h, c), each (B, h, W), for the row above the first."""
        zeros = x.new_zeros(x.shape[0], self.hidden, x.shape[-1])
        return zeros, zeros

    def row(self, x_row: torch.Tensor, state) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """One row: features x_row (B, F, W) and the previous row's (h, c) -> (output (B, F, W), new state).

        The sampling cache calls this directly, carrying the state down the image.
        """
        h, c = state
        gates = self.input_to_state(x_row[:, :, None])[:, :, 0] + self.state_to_state(h)  # (B, 4h, W)
        h, c = lstm_cell(gates, c)
        return x_row + self.project(h[:, :, None])[:, :, 0], (h, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        state = self.initial_state(x)
        rows = []
        for x_row in x.unbind(2):  # unbind, not x[:, :, i]: one gradient stack instead of a full-size zero map per row
            out, state = self.row(x_row, state)
            rows.append(out)
        return torch.stack(rows, dim=2)


class _DiagonalLSTM(nn.Module):
    """One direction of the Diagonal BiLSTM (left to right): (B, F, H, W) -> hidden (B, h, H, W)."""

    def __init__(self, features: int, hidden: int, gate_groups: torch.Tensor, feature_groups: torch.Tensor):
        super().__init__()
        self.hidden = hidden
        self.input_to_state = MaskedConv2d.raster(features, 4 * hidden, 1, "B", feature_groups, gate_groups)
        # Kernel tap 0 reads the row above, tap 1 the same row, both in the previous skewed column:
        # pixels (i - 1, j) and (i, j - 1) of the image.
        self.state_to_state = nn.Conv1d(hidden, 4 * hidden, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, H, W = x.shape
        gates_in = skew(self.input_to_state(x))  # (B, 4h, H, W + H - 1)
        h = c = x.new_zeros(B, self.hidden, H)
        columns = []
        for gates_col in gates_in.unbind(-1):  # unbind: see RowLSTM.forward
            gates = gates_col + self.state_to_state(F.pad(h, (1, 0)))  # (B, 4h, H)
            h, c = lstm_cell(gates, c)
            columns.append(h)
        return unskew(torch.stack(columns, dim=-1), W)


class DiagonalBiLSTM(_Residual):
    """Diagonal BiLSTM layer (Section 3.2), residual: (B, F, H, W) -> (B, F, H, W)."""

    def __init__(self, features: int, hidden: int, groups: int = 1):
        super().__init__(features, hidden, groups)
        self.left_to_right = _DiagonalLSTM(features, hidden, self.gate_groups, self.feature_groups)
        self.right_to_left = _DiagonalLSTM(features, hidden, self.gate_groups, self.feature_groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        forward_map = self.left_to_right(x)
        backward_map = self.right_to_left(x.flip(-1)).flip(-1)
        # The right-to-left map at (i, j) has seen (i, j + 1 ..): moved down a row it brings row i - 1 only.
        return x + self.project(forward_map + down_shift(backward_map))
