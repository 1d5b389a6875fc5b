"""Cached codes or codes on the fly: what a VQ-VAE prior's training step pays for its tokens.

For a trained first stage (a ``vqvae`` run folder) and a prior of the given size, times on one
thread: encoding the whole training split once (what ``model.codes=cached`` pays at the start of
a run), encoding one batch (what ``model.codes=on-the-fly`` pays on every step), and one training
step of the prior (forward, backward, Adam) from tokens.

    python benchmarks/bench_vq_codes.py runs/vqvae-mnist-cpu --data mnist
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from genlab.config import RunConfig, apply_overrides  # noqa: E402
from genlab.data import load_dataset  # noqa: E402
from genlab.train.run import build_model, build_objective  # noqa: E402


def _seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    began = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - began) / repeats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("first_stage", help="a vqvae run folder")
    p.add_argument("--data", default="mnist")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--set", action="append", default=[], help="prior overrides, e.g. width=64")
    args = p.parse_args()
    torch.set_num_threads(1)
    cfg = apply_overrides(RunConfig.create("vqvae-prior"),
                          [f"first_stage={args.first_stage}", f"data.name={args.data}", *args.set])
    train_set = load_dataset(args.data, "train", cfg.data)
    model, objective = build_model(cfg, train_set.spec), build_objective(cfg, train_set.spec)
    x = train_set.batch(torch.arange(args.batch_size))["x"]
    with torch.no_grad():
        codes = model.tokens(x)
    opt = torch.optim.Adam(model.prior.parameters(), lr=1e-4)

    def step():
        opt.zero_grad()
        objective(model, {"codes": codes}, "main", 0)["loss"].mean().backward()
        opt.step()

    def encode_batch():
        with torch.no_grad():
            model.tokens(x)

    def encode_all():
        with torch.no_grad():
            for i in range(0, len(train_set), 500):
                model.tokens(train_set.batch(torch.arange(i, min(i + 500, len(train_set))))["x"])

    t_step, t_encode = _seconds(step, args.repeats), _seconds(encode_batch, args.repeats)
    began = time.perf_counter()
    encode_all()
    t_all = time.perf_counter() - began
    print(f"prior {cfg.model.prior} width {cfg.model.width} layers {cfg.model.layers}, batch {args.batch_size}, "
          f"1 thread")
    print(f"prior training step from tokens: {t_step * 1000:.1f} ms")
    print(f"encoding one batch (on-the-fly, every step): {t_encode * 1000:.1f} ms "
          f"(+{100 * t_encode / t_step:.0f} % per step)")
    print(f"encoding the {len(train_set)} training images once (cached): {t_all:.1f} s "
          f"= {t_all / t_encode:.0f} batches' encoding, paid back after that many steps")


if __name__ == "__main__":
    main()
