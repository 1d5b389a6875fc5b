"""Audio out of genlab: WAV files, waveform and spectrogram figures, and the report's audio players.

`genlab sample RUN --label 7 --n 8 --out DIR` on an audio run writes ``DIR/sample_000_digit7.wav`` ...
(16-bit PCM at the data's sample rate, mu-law codes decoded) and ``DIR/samples.png`` (each clip's
waveform above its log spectrogram). `genlab report` on an audio run draws one clip per class and
embeds them as ``<audio>`` players beside a figure of generated spectrograms next to real ones.
"""

from __future__ import annotations

import wave
from pathlib import Path

import torch

from genlab.card import conditioning
from genlab.errors import InputError
from genlab.nn.audio import model_input_to_waveform
from genlab.registry import FIGURE_SETS
from genlab.reports.images import save_figure, subplots
from genlab.rng import make_generators
from genlab.sampling.api import draw

N_FFT = 256  # 32 ms windows at 8 kHz


def write_wav(clip: torch.Tensor, path: str | Path, sample_rate: int) -> Path:
    """One clip (1, L) of model input (mu-law codes / 255) -> a mono 16-bit PCM WAV file."""
    pcm = (model_input_to_waveform(clip.reshape(-1).cpu()) * 32767).round().clamp(-32768, 32767).to(torch.int16)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.numpy().astype("<i2").tobytes())
    return path


def log_spectrogram(clip: torch.Tensor) -> torch.Tensor:
    """(1, L) model input -> (N_FFT / 2 + 1, frames) magnitudes in dB (Hann window, hop N_FFT / 4)."""
    wave_ = model_input_to_waveform(clip.reshape(-1).cpu())
    spec = torch.stft(wave_, N_FFT, N_FFT // 4, window=torch.hann_window(N_FFT), return_complex=True).abs()
    return 20 * torch.log10(spec + 1e-5)


def _spectrogram(ax, clip, sample_rate: int, title: str) -> None:
    db = log_spectrogram(clip)
    seconds = clip.shape[-1] / sample_rate
    ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=float(db.max()),
              extent=(0, seconds, 0, sample_rate / 2000))
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("s", fontsize=7)
    ax.set_ylabel("kHz", fontsize=7)
    ax.tick_params(labelsize=6)


def save_clip_figure(clips: torch.Tensor, sample_rate: int, path: str | Path, titles: list[str]) -> Path:
    """One column per clip (n, 1, L): its waveform above its log spectrogram."""
    n = len(clips)
    fig, axes = subplots(2, n, figsize=(2.2 * n, 4), layout="constrained", squeeze=False)
    for k, clip in enumerate(clips):
        w = model_input_to_waveform(clip.reshape(-1).cpu())
        axes[0, k].plot(torch.arange(len(w)) / sample_rate, w.numpy(), linewidth=0.4)
        axes[0, k].set_ylim(-1, 1)
        axes[0, k].set_title(titles[k], fontsize=8)
        axes[0, k].tick_params(labelsize=6)
        _spectrogram(axes[1, k], clip, sample_rate, "")
    return save_figure(fig, path)


def save_comparison_figure(real: torch.Tensor, fake: torch.Tensor, labels: list[int], sample_rate: int,
                           path: str | Path, title: str = "") -> Path:
    """Spectrograms of real clips (top row) above generated clips of the same digits (bottom row)."""
    n = len(labels)
    fig, axes = subplots(2, n, figsize=(1.9 * n, 3.6), layout="constrained", squeeze=False)
    for k, digit in enumerate(labels):
        _spectrogram(axes[0, k], real[k], sample_rate, f"real {digit}")
        _spectrogram(axes[1, k], fake[k], sample_rate, f"generated {digit}")
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def save_clips(clips: torch.Tensor, out_dir: str | Path, sample_rate: int, labels=None,
               first: int = 0) -> list[Path]:
    """``out_dir/sample_NNN[_digitK].wav`` per clip (n, 1, L), and ``out_dir/samples.png``; returns the paths.

    ``labels``: the class of each clip (a sequence of n ints), named in the file names; None for none.
    """
    out_dir = Path(out_dir)
    if out_dir.suffix:
        raise InputError(f"{out_dir}: audio samples go into a folder (--out DIR), one WAV file per clip")
    names = [f"sample_{first + i:03d}" + ("" if labels is None else f"_digit{int(labels[i])}")
             for i in range(len(clips))]
    paths = [write_wav(clip, out_dir / f"{name}.wav", sample_rate) for clip, name in zip(clips, names)]
    shown = min(len(clips), 8)  # a figure of at most 8 columns stays readable
    paths.append(save_clip_figure(clips[:shown], sample_rate, out_dir / "samples.png", names[:shown]))
    return paths


def first_of_each_class(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """Index of the first example of every class 0..classes-1 (in split order)."""
    return torch.stack([(labels == k).nonzero()[0, 0] for k in range(classes)])


@FIGURE_SETS.register("audio")
def report_figures(run, out_dir: Path, device) -> list[tuple[str, str]]:
    """`genlab report` on an audio run: one generated clip per digit (players), and their spectrograms
    beside the first real test clip of the same digit."""
    model, out_dir, rate = run.model, Path(out_dir), run.spec.sample_rate
    classes = conditioning(model).num_classes
    labels = torch.arange(max(classes, 1))
    fake = draw(model, len(labels), seed=0, device=device, label=labels if classes else None)
    test = run.dataset("test")
    index = first_of_each_class(test.labels, len(labels)) if classes else torch.arange(len(labels))
    real = test.batch(index)["x"]
    figs = [("Generated (bottom, seed 0) and real test clips (top): log spectrograms", "spectrograms.png")]
    save_comparison_figure(real, fake, labels.tolist(), rate, out_dir / "spectrograms.png",
                           f"{run.cfg.model_name}, step {run.step}")
    for k, clip in enumerate(fake):
        name = f"generated_{k:02d}" + (f"_digit{k}" if classes else "") + ".wav"
        write_wav(clip, out_dir / name, rate)
        figs.append((f"Generated clip {k}" + (f" (digit {k})" if classes else ""), name))
    return figs
