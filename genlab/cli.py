"""`genlab` command line: parse the arguments, call one function, report errors in one line."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from genlab.errors import InputError

HELP_SET = ("override a config value, repeatable: section.key=value or an unambiguous key=value "
            "(e.g. --set optim.lr=3e-4 --set latent_dim=2); `genlab train MODEL --dry-run` lists every key")
HELP_DATA_ROOT = "folder holding the datasets (default: $GENLAB_DATA, else ~/.cache/genlab/data)"
HELP_DEVICE = "auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps"


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other genlab error (the full usage is one --help away)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Checked:
    """An argparse ``type``: the option's text parsed and checked against a declared ``Range``.

    ``owner`` is a function returning the config dataclass whose field ``name`` declares the range
    (imported only once the option is given, so `genlab --help` stays fast); without it, ``bounds``
    declare the range of an option that feeds no config field.
    """

    def __init__(self, owner=None, name: str = "", kind=int, **bounds):
        self.owner, self.name, self.kind, self.bounds = owner, name, kind, bounds
        self.__name__ = getattr(kind, "__name__", "number")

    def __call__(self, text: str):
        from genlab.config import ConfigError, Range, declared_range, parse_value

        if self.owner is None:
            range_, kind = Range(**self.bounds), self.kind
        else:
            range_, kind = declared_range(self.owner(), self.name)
        try:
            value = parse_value(text, kind, "")
        except ConfigError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {range_.describe(kind)}") from None
        try:
            range_.check("", value, kind)
        except ConfigError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
        return value


def _train_config():
    from genlab.config import TrainConfig

    return TrainConfig


def _eval_options():
    from genlab.eval.options import EvalOptions

    return EvalOptions


def _ood_options():
    from genlab.ood.run import OODOptions  # imports torch

    return OODOptions


def _train_field(name):
    return _Checked(_train_config, name)


def _eval_field(name):
    return _Checked(_eval_options, name)


def _ood_field(name):
    return _Checked(_ood_options, name)


COUNT = _Checked(ge=1)  # a number of images, samples, steps...
SEED = _train_field("seed")


class _SampleHelp(argparse.Action):
    """`genlab sample --help` also lists every sampler's options, read from their dataclasses only when
    asked (so that building the parser imports no torch)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from genlab.registry import MODELS
        from genlab.sampling.api import describe_sampler_options

        per_model = "; ".join(f"{name}: {', '.join(cls.card.sampler_names) or 'none'}" for name, cls in MODELS.items())
        parser.epilog = (f"samplers of each model (the first is the default): {per_model}\n\n"
                         "sampler options (--set key=value):\n" + "\n".join(describe_sampler_options()))
        parser.print_help()
        parser.exit()


def _add_alpha_over(p, reference: str):
    """The one rule for transparent pixels of handed images (score, classify, translate convert alike)."""
    p.add_argument("--alpha-over", choices=["auto", "black", "white"], default="auto",
                   help=f"colour under transparent pixels (auto: the border colour of {reference})")


def _add_run_loading(p):
    """The options of every command that loads a trained run: where to run it, which weights, where the data is."""
    p.add_argument("--device", default="auto", help=HELP_DEVICE)
    p.add_argument("--no-ema", action="store_true", help="use the raw weights even if the run kept an EMA")
    p.add_argument("--data-root", help=HELP_DATA_ROOT)


def _add_train(sub):
    p = sub.add_parser("train", help="train a model (or resume a run)",
                       description="Train MODEL on a dataset into a run folder, or resume an interrupted run. "
                                   "Launch under `torchrun --nproc_per_node N` for data-parallel training.")
    p.add_argument("model", nargs="?", help="a model name from `genlab models`")
    p.add_argument("--data", help="a dataset name from `genlab data list` (default: the preset's, else digits)")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest valid checkpoint")
    p.add_argument("--preset", help="start from a named preset (`genlab models --presets` lists them)")
    p.add_argument("--steps", type=_train_field("steps"),
                   help="total optimizer steps of the run (a resumed run stops at the same step)")
    p.add_argument("--until-step", type=COUNT, help="stop with a checkpoint after this step; resume later")
    p.add_argument("--seed", type=SEED, help="seed of weights, data order and noise")
    p.add_argument("--device", help=HELP_DEVICE)
    p.add_argument("--batch-size", type=_train_field("batch_size"), help="global batch size (over all processes)")
    p.add_argument("--data-root", help=HELP_DATA_ROOT)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=HELP_SET)
    p.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")


def _add_run_cmds(sub):
    from typing import get_args

    from genlab.config import CompileMode

    p = sub.add_parser("sample", help="draw samples from a trained run into an image grid (audio: WAV files)", add_help=False,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-h", "--help", action=_SampleHelp, help="show this help, with every sampler's options, and exit")
    p.add_argument("run_dir", help="a run folder written by `genlab train`")
    p.add_argument("--n", type=COUNT, default=64, help="number of samples (default 64)")
    p.add_argument("--out", default=None, help="output image (default RUN_DIR/samples.png); for an audio run a "
                   "folder receiving one WAV per clip and samples.png (default RUN_DIR/samples)")
    p.add_argument("--seed", type=SEED, default=0, help="sample i of seed s is the same image whatever --batch-size")
    p.add_argument("--label", type=_Checked(ge=0), default=None, help="class to draw, for class-conditional models")
    p.add_argument("--batch-size", type=COUNT, default=256, help="samples per forward pass")
    p.add_argument("--sampler", default=None, metavar="NAME", help="one of the model's samplers (default: its first)")
    p.add_argument("--set", dest="options", action="append", default=[], metavar="KEY=VALUE",
                   help="a sampler option, repeatable (e.g. --set temperature=0.8); listed below under --help")
    p.add_argument("--compile", choices=get_args(CompileMode), default=None, metavar="MODE",
                   help="torch.compile the networks in this mode (default: eager): reduce-overhead replays each "
                        "as a CUDA graph on a GPU; the first batch compiles (about a minute on a CPU; README, "
                        "\"Compiled sampling\")")
    _add_run_loading(p)

    p = sub.add_parser("eval", help="evaluate a run and write RUN_DIR/eval.json",
                       description="Run the model's evaluators (likelihoods, bounds, sample metrics) on the test "
                                   "split; each metric is written with its unit, kind (exact/bound/estimate) "
                                   "and protocol.")
    p.add_argument("run_dir")
    p.add_argument("--only", nargs="+", help="evaluator names to run (default: the model's own list)")
    p.add_argument("--weights", choices=("both", "ema", "raw"), default="both",
                   help="both (default): a run that kept an EMA is evaluated with its EMA weights (plain names) "
                        "and its raw weights (raw/NAME); ema or raw: one set (--no-ema is --weights raw)")
    p.add_argument("--split", default="test", help="split to evaluate on (default test)")
    p.add_argument("--protocol", default="quick", choices=("quick", "paper"),
                   help="quick (default): sizes that finish in minutes on a CPU (IWAE k=100, 1000 random test "
                        "images, 1000 samples); paper: IWAE k=5000 and exact NLL on the whole test set, 10000 "
                        "samples. Flags below override the protocol's value; eval.json states what was used")
    p.add_argument("--iwae-k", type=_eval_field("iwae_k"), default=None,
                   help="importance samples per image for the IWAE bound")
    p.add_argument("--iwae-prior-fraction", type=_eval_field("iwae_prior_fraction"), default=None,
                   help="share of IWAE samples drawn from the prior instead of the encoder (default 0.1; "
                        "0: plain IWAE); the bound stays valid and finite when the encoder is wrong")
    p.add_argument("--iwae-decodes", type=_eval_field("iwae_decodes"), default=None,
                   help="images per IWAE decoder pass (default 4096 on a GPU, 256 on a CPU); more fills a large "
                        "GPU better; it changes which seeded noise each sample gets, not what is estimated")
    p.add_argument("--max-examples", type=_count_or_all, default=None,
                   help="evaluate a random subset of this many images, or 'all'")
    p.add_argument("--n-samples", type=_eval_field("n_samples"), default=None,
                   help="generated samples for sample-quality metrics")
    p.add_argument("--sampler-steps", type=_eval_field("sampler_steps"), default=None,
                   help="steps of an iterative sampler (diffusion) for sample metrics (quick protocol: 10; "
                        "paper: the sampler's default, e.g. DDIM 50)")
    p.add_argument("--n-reference", type=_eval_field("n_reference"), default=None,
                   help="real images behind the reference statistics")
    p.add_argument("--sample-output", choices=("sample", "mean"), default="sample",
                   help="what a VAE's samples are for sample metrics and memorization: pixels drawn from its "
                        "likelihood p(x|z) (default) or the decoder means E[x|z]; the protocol says which")
    p.add_argument("--reference-split", default=None, help="split the samples are compared with (default: --split)")
    p.add_argument("--inception-weights", default="",
                   help="Inception-v3 weights file for standard FID (default: the dataset's own feature network)")
    p.add_argument("--inception-unverified", action="store_true",
                   help="accept Inception weights whose sha256 is not the official file's (tensors only; "
                        "metrics are then named inception-v3-unverified)")
    p.add_argument("--batch-size", type=_eval_field("batch_size"), default=None,
                   help="images per forward pass (default 256 on a GPU, 32 on a CPU)")
    p.add_argument("--seed", type=SEED, default=0)
    p.add_argument("--compile", choices=get_args(CompileMode), default=None, metavar="MODE",
                   help="torch.compile the networks in this mode (default: eager): the same estimates, sooner on "
                        "long evaluations (README, \"Compiled sampling\")")
    _add_run_loading(p)

    p = sub.add_parser("probe", help="linear and k-NN probes of a run's frozen features (or of a floor)",
                       description="Fit a linear probe (logistic regression) and a k-NN probe (k=20, cosine) on the "
                                   "frozen, standardised features the run's model card declares, with few and many "
                                   "labels per class and several seeded label subsets; prints the protocol, a time "
                                   "estimate and the table, and writes RUN_DIR/probe.json (or --out).")
    p.add_argument("run_dir", nargs="?", help="a run folder (omit with --floor)")
    p.add_argument("--floor", choices=("pixels", "untrained"), default=None,
                   help="probe a floor instead of a run: raw pixels, or the shared self-supervised backbone untrained")
    p.add_argument("--protocol", default="quick", choices=("quick", "full"),
                   help="quick (default, minutes on 2 CPU cores): 10 and 100 labels per class, 3 seeds, 2000 test "
                        "images; full: 10, 100, 1000 and all labels per class, 3 seeds, all test images")
    p.add_argument("--data", nargs="+", default=None, metavar="NAME",
                   help="datasets to probe on (default: the run's own; floors: mnist fashion-mnist)")
    p.add_argument("--labels-per-class", nargs="+", type=_labels_per_class, default=None, metavar="N",
                   help="labelled train images per class, counts or 'all' (overrides the protocol's)")
    p.add_argument("--seeds", type=COUNT, default=None, help="label subsets (seeds 0..N-1) to average over")
    p.add_argument("--test-examples", type=_count_or_all, default=None,
                   help="a seeded random subset of the test split, or 'all'")
    p.add_argument("--out", default=None, help="JSON file to write (default RUN_DIR/probe.json; needed with --floor)")
    _add_run_loading(p)

    p = sub.add_parser("complete", help="complete the lower half of test images (autoregressive models)",
                       description="Keep the top rows of random test images and sample the rest several times "
                                   "with an autoregressive run; writes one figure: original, masked, completions.")
    p.add_argument("run_dir", help="a run folder of pixelcnn, gated-pixelcnn or pixel-transformer")
    p.add_argument("--out", default=None, help="output figure (default RUN_DIR/completions.png)")
    p.add_argument("--images", type=COUNT, default=4, help="number of test images (default 4)")
    p.add_argument("--rows", type=_Checked(ge=0), default=None, help="top rows kept (default: half the image)")
    p.add_argument("--completions", type=COUNT, default=4, help="completions per image (default 4)")
    p.add_argument("--split", default="test", help="split the images come from (default test)")
    p.add_argument("--seed", type=SEED, default=0, help="picks the images and seeds the completions")
    _add_run_loading(p)

    p = sub.add_parser("export", help="write a self-contained model folder (weights, config, model card)",
                       description="Write FOLDER with model.safetensors (the EMA weights when the run kept them), "
                                   "config.json, data.json, eval.json and a README.md model card (eval table, "
                                   "the command that made the run); `genlab.load(FOLDER)` or any command taking "
                                   "RUN_DIR reads it on another machine.")
    p.add_argument("run_dir", help="a run folder written by `genlab train`")
    p.add_argument("folder", help="new (or empty) folder to write")
    p.add_argument("--no-ema", action="store_true", help="export the raw weights even if the run kept an EMA")

    p = sub.add_parser("report", help="write RUN_DIR/report.md and report.html with figures")
    p.add_argument("run_dir")
    p.add_argument("--device", default="auto", help=HELP_DEVICE)
    p.add_argument("--data-root", help=HELP_DATA_ROOT)


def _add_info_cmds(sub):
    p = sub.add_parser("models", help="list the registered models")
    p.add_argument("--presets", action="store_true", help="list the named presets instead")
    p = sub.add_parser("data", help="list datasets or check the local files")
    p.add_argument("action", choices=["list", "check"], help="list: what exists; check: verify local files")
    p.add_argument("names", nargs="*", help="datasets to check (default: all)")
    p.add_argument("--data-root", help=HELP_DATA_ROOT)
    p = sub.add_parser("quickstart", help="train a small VAE on the bundled 8x8 digits and write a report",
                       description="No download needed: trains a VAE on scikit-learn's 8x8 digits (about 2 "
                                   "minutes on 2 CPU cores), then writes samples, reconstructions, an "
                                   "interpolation strip, eval.json and report.md/html.")
    p.add_argument("--out", default="runs/quickstart", help="run folder (default runs/quickstart)")
    p.add_argument("--steps", type=_train_field("steps"), default=2000, help="optimizer steps (default 2000)")
    p.add_argument("--device", default="auto", help=HELP_DEVICE)


def _add_eval_tools(sub):
    p = sub.add_parser("features", help="list or train the feature networks of the sample-quality metrics",
                       description="Feature networks are small classifiers whose penultimate activations give "
                                   "FID/KID/precision-recall on MNIST-like data (metric names end in the "
                                   "network name, e.g. fid_mnist-lenet-v1). `train` reruns the fixed recipe.")
    p.add_argument("action", choices=["list", "train"], help="list: shipped networks; train: rerun a recipe")
    p.add_argument("--data", help="dataset whose network to train (mnist or fashion-mnist)")
    p.add_argument("--out", default=None, help="folder for the weights and manifest.json "
                                               "(default: genlab/weights, replacing the shipped copy)")
    p.add_argument("--seed", type=SEED, default=0, help="seed of initialization, data order and augmentation")
    p.add_argument("--data-root", help=HELP_DATA_ROOT)
    p = sub.add_parser("compare", help="compare runs: metric table, sample grids and training curves",
                       description="Write OUT.md and OUT.html (and OUT_curves.png) from each RUN_DIR's eval.json, "
                                   "samples.png and metrics.jsonl.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default="compare", help="output stem (default ./compare -> compare.md, compare.html)")


def _add_ood(sub):
    p = sub.add_parser("ood", help="out-of-distribution detection: AUROC/AUPR/FPR95 of likelihood-based scores",
                       description="Score every test image of the run's dataset (in-distribution) and of each "
                                   "--ood dataset (converted to the run's size, channels and bits) with the raw "
                                   "likelihood and corrected scores (input complexity, typicality, and the "
                                   "likelihood ratio with --background); writes RUN_DIR/ood.json, "
                                   "ood_scores.npz and ood_report.md/html.")
    p.add_argument("run_dir", help="a run folder of a model with a likelihood (vae, autoencoder, pixelcnn, diffusion, ...)")
    p.add_argument("--ood", action="append", required=True, metavar="NAME_OR_PATH",
                   help="an OOD dataset from `genlab data list`, or your own set: a folder of images (converted "
                        "like `genlab score`'s), an .npz of uint8 images or an IDX file; repeatable")
    p.add_argument("--background", metavar="RUN_DIR",
                   help="run folder of a background model trained on mutated inputs (the *-background presets) "
                        "for the likelihood ratio of Ren et al. 2019")
    p.add_argument("--max-examples", type=_ood_field("max_examples"), default=None,
                   help="score a seeded random subset of this many images per set (default: all)")
    p.add_argument("--reference-examples", type=_ood_field("reference_examples"), default=2000,
                   help="training images whose mean NLL is the typicality test's H_hat (default 2000)")
    p.add_argument("--typicality-m", type=_ood_field("typicality_m"), default=10,
                   help="images per batch of the batch typicality test")
    p.add_argument("--iwae-k", type=_ood_field("iwae_k"), default=100,
                   help="importance samples per image for a VAE's IWAE bound")
    p.add_argument("--batch-size", type=_ood_field("batch_size"), default=256)
    p.add_argument("--seed", type=SEED, default=0, help="seeds the subsets, importance samples and binarization")
    _add_run_loading(p)

    p = sub.add_parser("score", help="outlier scores and per-pixel surprise maps of your own images",
                       description="Convert each image to the run's format (16-bit /257, alpha over the "
                                   "dataset's background colour, ITU-R 601-2 luma or RGB, centre crop, box "
                                   "shrink by whole factors then Lanczos, Bernoulli binarization for binary "
                                   "models), print its scores and save its surprise map. After `genlab ood RUN_DIR` the scores come with percentiles "
                                   "among the test images and the 95%-TPR verdict. Warns when an image's "
                                   "background (its median border pixel) is the opposite of the run's images'.")
    p.add_argument("run_dir", help="a run folder of a model with a likelihood")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... files of any size and mode")
    p.add_argument("--out", default=None, help="folder for the surprise maps and scores.json "
                                               "(default RUN_DIR/surprise)")
    p.add_argument("--background", metavar="RUN_DIR", help="background run for the likelihood ratio "
                                                           "(default: the one of RUN_DIR/ood.json)")
    _add_alpha_over(p, "the run's test images")
    p.add_argument("--iwae-k", type=_ood_field("iwae_k"), default=None,
                   help="importance samples for a VAE (default: ood.json's)")
    p.add_argument("--seed", type=SEED, default=0)
    _add_run_loading(p)


def _classify_field(name):
    def owner():
        from genlab.ood.classify_eval import ClassifyOptions  # imports torch

        return ClassifyOptions

    return _Checked(owner, name)


def _add_classify(sub):
    p = sub.add_parser("classify", help="classify images by Bayes' rule on a likelihood model, with a reject option",
                       description="p(y|x) = p(x|y) p(y) / p(x) from one class-conditional run (gated-pixelcnn or "
                                   "pixel-transformer with model.conditional=true: exact; diffusion: a bound) or one "
                                   "run per class (each trained with --set data.classes=C). Each image (converted as "
                                   "`genlab score` converts it) gets its label, posterior and accept/reject: "
                                   "ambiguous (Chow: max p(y|x) < 1 - t) or outlier (a corrected outlier score of "
                                   "p(x) above its threshold), both thresholds fitted on held-out test images at "
                                   "--false-rejection. --evaluate measures accuracy, ECE, AURC and outlier "
                                   "AUROC/FPR95 against the shipped LeNet baseline.")
    p.add_argument("paths", nargs="+", metavar="RUN_OR_IMAGE",
                   help="run folders first (one class-conditional run, or one run per class), then image files")
    p.add_argument("--evaluate", action="store_true",
                   help="evaluate instead of classifying files: writes OUT/classify.json, classify_report.md, figures")
    p.add_argument("--ood", nargs="+", default=None, metavar="NAME",
                   help="outlier sets for --evaluate: datasets or 'noise' (default fashion-mnist mnist-inverted noise)")
    p.add_argument("--false-rejection", type=_classify_field("false_rejection"), default=0.05,
                   help="share of held-out in-distribution images each reject rule may reject (default 0.05)")
    p.add_argument("--outlier-score", default="typicality",
                   help="the outlier rule's score of p(x): typicality (default), complexity-zlib, complexity-png, bpd")
    p.add_argument("--n-fit", type=_classify_field("n_fit"), default=1000,
                   help="held-out test images the thresholds are fitted on (default 1000)")
    p.add_argument("--max-examples", type=_classify_field("max_examples"), default=1000,
                   help="--evaluate: test images measured (disjoint from the fit images) and images per outlier set")
    p.add_argument("--batch-size", type=_classify_field("batch_size"), default=32,
                   help="images per pass (a class-conditional run scores batch x classes at once)")
    p.add_argument("--iwae-k", type=_classify_field("iwae_k"), default=100, help="importance samples of a VAE's bound")
    p.add_argument("--no-baseline", action="store_true", help="--evaluate: skip the LeNet softmax baseline")
    _add_alpha_over(p, "the run's test images")
    p.add_argument("--out", default=None, help="folder for the outputs (default: the first run folder)")
    p.add_argument("--seed", type=SEED, default=0, help="seeds the held-out split, subsets, binarization and bounds")
    _add_run_loading(p)


def _add_translate(sub):
    p = sub.add_parser("translate", help="translate your own images with a two-domain run (cyclegan)",
                       description="Convert each image to the run's format (as `genlab score` does: alpha over the "
                                   "source domain's background colour, luma or RGB, centre crop, resize), translate "
                                   "it, and write OUT/NAME_DIRECTION.png and OUT/translations_DIRECTION.png (rows: "
                                   "input, translation, reconstruction).")
    p.add_argument("run_dir", help="a cyclegan run folder")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="PNG/JPEG/... files of any size and mode")
    p.add_argument("--direction", choices=["a2b", "b2a"], default="a2b",
                   help="a2b: from domain A (the run's data.name) to B (data.domain_b); b2a: back")
    p.add_argument("--out", default=None, help="folder for the translations (default RUN_DIR/translations)")
    _add_alpha_over(p, "the source domain's images")
    _add_run_loading(p)


def _add_app(sub):
    p = sub.add_parser("app", help="a local web app to explore trained runs (needs: pip install -e \".[app]\")",
                       description="Serve a page for exploring runs in a browser: samples (seed, label, sampler "
                                   "options, PNG download), latent space (2-D manifold, sliders, interpolation), "
                                   "completion, outlier scores of your images, and the comparison of all RUN_DIRs. "
                                   "Binds 127.0.0.1 unless --host says otherwise.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run or exported folders")
    p.add_argument("--port", type=_Checked(ge=0, le=65535), default=8765, help="TCP port (0: a free one)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; anything but 127.0.0.1/localhost exposes the app (no login)")
    p.add_argument("--max-upload-mb", type=_Checked(kind=float, gt=0, le=1024), default=10.0,
                   help="largest image file accepted, in MiB")
    _add_run_loading(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genlab", description="Train, sample, evaluate and compare deep "
                                                  "generative models of images.")
    parser.add_argument("--traceback", action="store_true",
                        help="show the full traceback of any error, user errors included (also GENLAB_DEBUG=1); "
                             "may also be given after the command")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_run_cmds(sub)
    _add_info_cmds(sub)
    _add_eval_tools(sub)
    _add_ood(sub)
    _add_classify(sub)
    _add_translate(sub)
    _add_app(sub)
    return parser


def _train(args) -> int:
    from genlab.api import train_run
    from genlab.configs import resolve_train_config

    if args.dry_run and not args.resume:
        print(resolve_train_config(args.model, preset=args.preset, data=args.data, steps=args.steps, seed=args.seed,
                                   device=args.device, batch_size=args.batch_size, data_root=args.data_root,
                                   overrides=args.overrides).to_json())
        return 0
    result = train_run(args.model, out=args.out, resume=args.resume, preset=args.preset, data=args.data,
                       steps=args.steps, until_step=args.until_step, seed=args.seed, device=args.device,
                       batch_size=args.batch_size, data_root=args.data_root, overrides=args.overrides)
    state = "interrupted at" if result.interrupted else "stopped at"
    print(f"{state} step {result.step} after {result.seconds:.1f} s ({result.skipped_steps} skipped steps); "
          f"run folder {result.run_dir}")
    if result.interrupted:
        print(f"resume with: genlab train --resume {result.run_dir}")
        return 130
    return 0


def _sample(args) -> int:
    import dataclasses

    from genlab.api import load
    from genlab.reports.images import save_grid
    from genlab.sampling.api import describe_sampling, sampler_options

    run = load(args.run_dir, args.device, use_ema=not args.no_ema, data_root=args.data_root, compile=args.compile)
    signal = run.spec.is_signal  # audio: a folder of WAV files and a figure, not an image grid
    out = args.out or str(Path(args.run_dir) / ("samples" if signal else "samples.png"))
    options_obj = sampler_options(run.model, args.sampler, args.options)  # bad keys fail here
    options = dataclasses.asdict(options_obj)
    images = run.sample(args.n, seed=args.seed, label=args.label, batch_size=args.batch_size, sampler=args.sampler,
                        **options)
    if signal:
        from genlab.reports.audio import save_clips

        labels = None if args.label is None else [args.label] * args.n
        path = Path(out)
        save_clips(images, path, run.spec.sample_rate, labels)
    else:
        path = save_grid(images, out)
    print(f"wrote {args.n} samples to {path} ({describe_sampling(run.model, args.sampler, options_obj)})")
    return 0


def _export(args) -> int:
    from genlab.api import load

    run = load(args.run_dir, "cpu", use_ema=not args.no_ema)
    print(f"wrote {run.export(args.folder)} (load it with genlab.load)")
    return 0


def _count_or_all(text: str):
    """--max-examples: a count, or 'all' (the whole split; overrides the protocol's subset)."""
    value = None if text == "all" else _eval_field("max_examples")(text)
    return "all" if value is None else value  # "all" and "none" both mean the whole split


def _eval(args) -> int:
    from genlab.eval.batches import EvalInterrupted
    from genlab.eval.options import EvalOptions
    from genlab.eval.run import evaluate_run

    given = {"batch_size": args.batch_size, "max_examples": args.max_examples, "iwae_k": args.iwae_k,
             "iwae_prior_fraction": args.iwae_prior_fraction, "iwae_decodes": args.iwae_decodes, "n_samples": args.n_samples,
             "n_reference": args.n_reference, "sampler_steps": args.sampler_steps}
    explicit = {k: (None if v == "all" else v) for k, v in given.items() if v is not None}
    opts = EvalOptions.for_protocol(args.protocol, split=args.split, seed=args.seed,
                                    reference_split=args.reference_split, inception_weights=args.inception_weights,
                                    inception_unverified=args.inception_unverified,
                                    sample_output=args.sample_output, **explicit)
    try:
        raw_only = args.no_ema or args.weights == "raw"
        evaluate_run(args.run_dir, opts, args.device, args.only, use_ema=not raw_only, data_root=args.data_root,
                     raw_too=args.weights == "both", compile=args.compile)
    except EvalInterrupted as stopped:
        print(f"genlab eval: interrupted: {stopped}", file=sys.stderr)
        return 130
    print(f"wrote {Path(args.run_dir) / 'eval.json'}")
    return 0


def _labels_per_class(text: str) -> int:
    """--labels-per-class: a count >= 1, or 'all' (0 inside: every labelled image)."""
    return 0 if text == "all" else COUNT(text)


def _probe(args) -> int:
    from genlab.eval.probe import ProbeOptions, probe_command

    given = {"labels_per_class": tuple(args.labels_per_class) if args.labels_per_class else None,
             "seeds": args.seeds, "test_examples": args.test_examples, "datasets": tuple(args.data or ())}
    explicit = {k: (None if v == "all" else v) for k, v in given.items() if v is not None}
    opts = ProbeOptions.for_protocol(args.protocol, **explicit)
    path = probe_command(args.run_dir, args.floor, opts, args.out, args.device, use_ema=not args.no_ema,
                         data_root=args.data_root)
    print(f"wrote {path}")
    return 0


def _complete(args) -> int:
    from genlab.reports.autoregressive import complete_run

    out = args.out or str(Path(args.run_dir) / "completions.png")
    path = complete_run(args.run_dir, out, args.images, args.rows, args.completions, args.seed, args.split,
                        args.device, use_ema=not args.no_ema, data_root=args.data_root)
    print(f"wrote completions to {path}")
    return 0


def _report(args) -> int:
    from genlab.reports.report import write_report

    md, html_path = write_report(args.run_dir, args.device, args.data_root)
    print(f"wrote {md} and {html_path}")
    return 0


def _models(args) -> int:
    from genlab.configs import PRESETS
    from genlab.registry import MODELS

    if args.presets:
        for name, fn in PRESETS.items():
            print(f"{name:32s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return 0
    for name, cls in MODELS.items():
        doc = (cls.__doc__ or (sys.modules[cls.__module__].__doc__) or "").strip().splitlines()
        print(f"{name:20s} {cls.card.family:15s} objective={cls.card.default_objective:15s} {doc[0] if doc else ''}")
    return 0


def _data(args) -> int:
    from genlab.config import DataConfig
    from genlab.data import check_datasets, list_datasets

    if args.action == "list":
        for row in list_datasets():
            shape = "x".join(map(str, row.get("shape") or ())) or "any"
            print(f"{row['name']:26s} {shape:9s} {row.get('description', '')}")
        return 0
    rows = check_datasets(DataConfig(root=args.data_root or ""), args.names or None)
    for row in rows:
        print(f"{row['name']:26s} {row['status']:8s} {row.get('message') or row.get('path', '')}")
    return 0 if all(r["status"] == "ok" for r in rows) else 1


def _quickstart(args) -> int:
    from genlab.quickstart import quickstart

    quickstart(args.out, args.steps, args.device)
    return 0


def _features(args) -> int:
    from genlab.eval.feature_nets import SPECS
    from genlab.eval.features import WEIGHTS_DIR, read_manifest, train_feature_net

    if args.action == "list":
        manifest = read_manifest()
        for name, spec in SPECS.items():
            entry = manifest.get(name)
            state = (f"test accuracy {entry['test_accuracy']:.2f} %, sha256 {entry['sha256'][:12]}" if entry
                     else "no weights: run `genlab features train --data " + spec.dataset + "`")
            print(f"{name:26s} {spec.dataset:16s} {state}")
        return 0
    if not args.data:
        raise InputError("give the dataset whose feature network to train: --data mnist or --data fashion-mnist")
    from genlab.config import DataConfig

    entry = train_feature_net(args.data, DataConfig(name=args.data, root=args.data_root or ""),
                              args.out or WEIGHTS_DIR, seed=args.seed)
    print(f"wrote {entry['name']} ({entry['test_accuracy']:.2f} % test accuracy, sha256 {entry['sha256']}) "
          f"to {args.out or WEIGHTS_DIR}")
    return 0


def _compare(args) -> int:
    from genlab.reports.compare import compare_runs

    md, html_path = compare_runs(args.run_dirs, args.out)
    print(f"wrote {md} and {html_path}")
    return 0


def _ood(args) -> int:
    from genlab.ood.run import OODOptions
    from genlab.reports.ood import ood_run

    opts = OODOptions(ood=args.ood, background=args.background, max_examples=args.max_examples,
                      reference_examples=args.reference_examples, typicality_m=args.typicality_m,
                      batch_size=args.batch_size, iwae_k=args.iwae_k, seed=args.seed, device=args.device, data_root=args.data_root, use_ema=not args.no_ema)
    ood_run(args.run_dir, opts)
    print(f"wrote {Path(args.run_dir) / 'ood.json'}")
    return 0


def _score(args) -> int:
    from genlab.reports.ood import format_result, score_images

    results = score_images(args.run_dir, args.images, args.out, args.background, args.alpha_over, args.iwae_k,
                           args.seed, args.device, args.data_root, use_ema=not args.no_ema)
    for r in results:
        print(format_result(r))
    return 0


def _classify(args) -> int:
    from genlab.ood.classify_eval import ClassifyOptions
    from genlab.reports.classify import classify_evaluate, classify_images, format_classification

    runs = [p for p in args.paths if Path(p).is_dir()]
    images = [p for p in args.paths if not Path(p).is_dir()]
    if not runs:
        raise InputError("give a run folder first: genlab classify RUN... IMAGE...")
    if args.evaluate and images:
        raise InputError("--evaluate takes run folders only; classify image files without it")
    opts = ClassifyOptions(false_rejection=args.false_rejection, outlier_score=args.outlier_score, n_fit=args.n_fit,
                           max_examples=args.max_examples, batch_size=args.batch_size, iwae_k=args.iwae_k,
                           baseline=not args.no_baseline, seed=args.seed, device=args.device,
                           data_root=args.data_root, use_ema=not args.no_ema,
                           **({"ood": tuple(args.ood)} if args.ood else {}))
    if args.evaluate:
        classify_evaluate(runs, opts, args.out)
        return 0
    summary = classify_images(runs, images, opts, args.out, args.alpha_over)
    print(f"conversion: {summary['conversion']}")
    for entry in summary["images"]:
        print(format_classification(entry))
    return 0


def _translate(args) -> int:
    from genlab.api import translate_files

    translate_files(args.run_dir, args.images, args.direction, args.out, args.alpha_over, args.device,
                    args.data_root, use_ema=not args.no_ema)
    return 0


def _app(args) -> int:
    try:
        from genlab.app.server import serve
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] in ("fastapi", "starlette", "uvicorn", "anyio", "pydantic"):
            raise InputError(f"genlab app needs the optional web packages ({err.name} is missing): "
                            "pip install -e \".[app]\" (or pip install \"genlab[app]\")") from None
        raise
    serve(args.run_dirs, args.host, args.port, args.device, not args.no_ema, args.data_root, args.max_upload_mb)
    return 0


COMMANDS = {"train": _train, "probe": _probe, "sample": _sample, "export": _export, "eval": _eval, "report": _report, "complete": _complete,
            "models": _models,
            "data": _data, "quickstart": _quickstart, "features": _features, "compare": _compare,
            "ood": _ood, "score": _score, "classify": _classify, "translate": _translate,
            "app": _app}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # --traceback is accepted anywhere on the line (`genlab sample RUN --traceback`): move it before the command.
    debug = "--traceback" in argv
    argv = (["--traceback"] if debug else []) + [a for a in argv if a != "--traceback"]
    args = build_parser().parse_args(argv)
    debug = debug or os.environ.get("GENLAB_DEBUG", "") not in ("", "0")
    from genlab.errors import USER_ERRORS, file_error_line

    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as err:
        if debug:
            raise
        # One line for what the user can fix; any other exception is a bug and keeps its traceback.
        print(f"genlab {args.command}: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        line = file_error_line(err)
        if line is None or debug:
            raise
        print(f"genlab {args.command}: error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
