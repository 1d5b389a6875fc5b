"""Pixel transformer: a causal (decoder-only) transformer over the raster sequence of sub-pixels.

Vaswani et al. 2017, "Attention Is All You Need" (arXiv:1706.03762), decoder
only; applied to pixels as in Parmar et al. 2018, "Image Transformer"
(arXiv:1802.05751) and Chen et al. 2020, "Generative Pretraining from Pixels"
(iGPT). Pre-norm blocks (LayerNorm -> attention / MLP -> residual) as in GPT-2.

The sequence lists the sub-pixels in raster order with the colour channels of a
pixel consecutive (R, G, B). Token t carries the value of sub-pixel t - 1 (its
level embedded, one table per colour channel) plus a positional embedding of the
sub-pixel it predicts; token 0 is a start token, or the class embedding when
``conditional`` (a class token). With the PixelCNN++ logistic-mixture head the
tokens are whole pixels instead (the mixture orders the colours).

Differences from the papers: full (not local) causal attention, which is
affordable for 28x28 images; positions are either one learned vector per
sequence position or a sum of row, column and channel embeddings ("2d").
``sampling_cache`` keeps each layer's keys and values so that sampling feeds
one token per step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from genlab.card import ConditioningSpec, ModelCard, SamplerSpec, TINY_RGB
from genlab.config import bounded
from genlab.errors import InputError
from genlab.models.autoregressive.heads import AutoregressiveHead, Likelihood
from genlab.nn.distributions import PixelDistribution, to_levels
from genlab.nn.labels import batch_labels
from genlab.nn.spec import DataSpec, Phase
from genlab.registry import MODELS


class _Attention(nn.Module):
    def __init__(self, d_model: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def forward(self, x, cache: dict | None = None):
        """x (B, n, d). Without a cache: causal self-attention over the n tokens.

        With ``cache`` = {"k", "v": (B, heads, T, d_head), "len": int}: the n tokens are
        the next ones of the sequence; their keys and values are appended, and each
        attends to the cached tokens and to the new ones up to itself.
        """
        B, n, d = x.shape
        q, k, v = self.qkv(x).view(B, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if cache is None:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            start = cache["len"]
            cache["k"][:, :, start : start + n] = k
            cache["v"][:, :, start : start + n] = v
            keys, values = cache["k"][:, :, : start + n], cache["v"][:, :, : start + n]
            mask = None
            if n > 1:  # new token i sees cached tokens and new tokens 0..i
                mask = torch.ones(n, start + n, dtype=torch.bool, device=x.device).tril(diagonal=start)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(B, n, d))


class _Block(nn.Module):
    def __init__(self, d_model: int, heads: int, mlp_ratio: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = _Attention(d_model, heads, dropout)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mlp_ratio * d_model), nn.GELU(),
                                 nn.Linear(mlp_ratio * d_model, d_model), nn.Dropout(dropout))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln1(x), cache)
        return x + self.mlp(self.ln2(x))


@MODELS.register("pixel-transformer")
class PixelTransformer(nn.Module):
    card = ModelCard(
        family="autoregressive", default_objective="nll", samplers=(SamplerSpec("autoregressive"),),
        evaluators=("exact-nll",), likelihood="exact",
        conditioning=ConditioningSpec(class_label="config", partial_image=True),  # model.conditional=true
        run_defaults={"optim.lr": 5e-4, "optim.warmup_steps": 200, "train.batch_size": 16},
        tiny=dict(d_model=8, layers=2, heads=2, mlp_ratio=2, conditional=True),
        tiny_data=TINY_RGB,
    )

    @dataclass
    class Config:
        likelihood: Likelihood = "auto"  # auto: bernoulli for binary data, categorical for 8-bit
        d_model: int = bounded(64, ge=1)  # width of the residual stream
        layers: int = bounded(4, ge=1)  # transformer blocks
        heads: int = bounded(4, ge=1)  # attention heads (d_model must be divisible by heads)
        mlp_ratio: int = bounded(4, ge=1)  # MLP hidden width = mlp_ratio * d_model
        dropout: float = bounded(0.0, ge=0.0, lt=1.0)
        positions: Literal["learned", "2d"] = "2d"  # one vector per position, or row + column + channel
        conditional: bool = False  # a class token starts the sequence (needs labelled data)
        mixture_components: int = bounded(10, ge=1)  # logistic-mixture only

        def validate(self):
            if self.d_model % self.heads:
                raise InputError(f"d_model={self.d_model} must be divisible by heads={self.heads}")

    def __init__(self, cfg: Config, data: DataSpec):
        super().__init__()
        cfg.validate()
        self.cfg, self.data = cfg, data
        self.conditional = cfg.conditional
        if cfg.conditional and data.num_classes < 1:
            raise InputError("model.conditional=true needs a labelled dataset (this one has no classes)")
        self.head = AutoregressiveHead.create(cfg.likelihood, data, cfg.mixture_components)
        C, H, W, d = data.channels, data.height, data.width, cfg.d_model
        self.per_token = C if self.head.joint else 1  # channels carried by one token
        self.seq_len = H * W * C // self.per_token
        self.levels = data.levels
        self.value_embed = nn.Embedding(C * self.levels, d)  # one table per colour channel
        if cfg.conditional:
            self.class_embed = nn.Embedding(data.num_classes, d)
        else:
            self.start = nn.Parameter(torch.zeros(d))
        if cfg.positions == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(self.seq_len, d))
        else:
            self.row_embed = nn.Parameter(torch.zeros(H, d))
            self.col_embed = nn.Parameter(torch.zeros(W, d))
            self.chan_embed = nn.Parameter(torch.zeros(C // self.per_token, d))
        for p in self._position_tables():
            nn.init.normal_(p, std=0.02)
        nn.init.normal_(self.value_embed.weight, std=0.02)
        self.blocks = nn.ModuleList(_Block(d, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.layers))
        self.ln_out = nn.LayerNorm(d)
        self.out = nn.Linear(d, self.head.raw_channels // (C // self.per_token))
        # GPT-2: scale the residual projections by 1/sqrt(2 * layers) at initialisation.
        for block in self.blocks:
            for lin in (block.attn.proj, block.mlp[2]):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * cfg.layers))
                nn.init.zeros_(lin.bias)

    def _position_tables(self):
        if self.cfg.positions == "learned":
            return [self.pos_embed]
        return [self.row_embed, self.col_embed, self.chan_embed]

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    # ---- sequence <-> image -------------------------------------------------------------

    def positions(self, start: int, n: int) -> torch.Tensor:
        """Embeddings (n, d) of the sub-pixels predicted at sequence positions start .. start + n - 1."""
        if self.cfg.positions == "learned":
            return self.pos_embed[start : start + n]
        t = torch.arange(start, start + n, device=self.row_embed.device)
        per_row = self.data.width * (self.data.channels // self.per_token)
        per_pixel = self.data.channels // self.per_token
        row, col, chan = t // per_row, (t % per_row) // per_pixel, t % per_pixel
        return self.row_embed[row] + self.col_embed[col] + self.chan_embed[chan]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] -> (B, T, per_token) table indices c * levels + level."""
        B, C = x.shape[:2]
        levels = to_levels(x, self.levels)
        idx = levels + torch.arange(C, device=x.device).view(1, C, 1, 1) * self.levels
        return idx.permute(0, 2, 3, 1).reshape(B, self.seq_len, self.per_token)  # raster, channels fastest

    def first_token(self, y, batch: int) -> torch.Tensor:
        """(B, 1, d): the start token, or the class token."""
        if self.conditional:
            return self.class_embed(batch_labels(y, batch, "this pixel-transformer")).unsqueeze(1)
        return self.start.expand(batch, 1, -1)

    def embed(self, x: torch.Tensor, y, start: int, n: int) -> torch.Tensor:
        """Input vectors (B, n, d) of sequence positions start .. start + n - 1 (from the values before them)."""
        B = x.shape[0]
        idx = self.tokens(x)[:, max(start - 1, 0) : start + n - 1]  # values of tokens start-1 .. start+n-2
        values = self.value_embed(idx).sum(2)  # (B, n or n - 1, d)
        if start == 0:
            values = torch.cat([self.first_token(y, B), values], dim=1)
        return values + self.positions(start, n)

    def to_image(self, out: torch.Tensor) -> torch.Tensor:
        """(B, T, r) per-token outputs -> raw (B, R, H, W) in the head's channel-major layout."""
        B = out.shape[0]
        C, H, W = self.data.channels, self.data.height, self.data.width
        per_pixel = C // self.per_token
        out = out.view(B, H, W, per_pixel * out.shape[-1])  # channel-major within a pixel
        return out.permute(0, 3, 1, 2)

    # ---- network ------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, H, W) in [0, 1], y (B,) labels when conditional -> raw outputs (B, R, H, W)."""
        h = self.embed(x, y, 0, self.seq_len)
        for block in self.blocks:
            h = block(h)
        return self.to_image(self.out(self.ln_out(h)))

    def distribution(self, raw: torch.Tensor) -> PixelDistribution:
        return self.head.distribution(raw)

    def sampling_cache(self, batch: int, y: torch.Tensor | None) -> "_KVCache":
        """Key/value cache for sampling one token per step."""
        return _KVCache(self, batch, y)


class _KVCache:
    """Feeds the sequence to the transformer incrementally, keeping keys and values.

    ``step(canvas, i, j, c)`` returns the raw outputs of step c at pixel (i, j),
    equal to ``model(canvas)[:, head.step_raw(c), i, j]``; tokens not yet fed
    (the first call after a completion prefix) are fed in one chunk.
    """

    def __init__(self, model: PixelTransformer, batch: int, y):
        p = next(model.parameters())
        heads = model.cfg.heads
        d_head = model.cfg.d_model // heads
        self.model, self.y, self.fed = model, y, 0
        self.caches = [{"k": p.new_zeros(batch, heads, model.seq_len, d_head),
                        "v": p.new_zeros(batch, heads, model.seq_len, d_head), "len": 0} for _ in model.blocks]
        if model.conditional and y is None:
            raise InputError("this pixel-transformer is class-conditional: pass a label")

    def step(self, canvas: torch.Tensor, i: int, j: int, c: int) -> torch.Tensor:
        m = self.model
        per_pixel = m.data.channels // m.per_token
        t = (i * m.data.width + j) * per_pixel + c
        if t < self.fed or t >= m.seq_len:
            raise InputError(f"cached sampling must go forward in raster order: asked for position {t} "
                             f"after {self.fed} were fed")
        n = t + 1 - self.fed
        h = m.embed(canvas, self.y, self.fed, n)
        for block, cache in zip(m.blocks, self.caches):
            h = block(h, cache)
            cache["len"] += n
        self.fed = t + 1
        return m.out(m.ln_out(h[:, -1]))  # (B, r): the step's raw outputs
