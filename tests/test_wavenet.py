"""WaveNet and the FSDD audio data: mu-law, causality and receptive field by gradients, the queue cache
against the full forward pass, and the WAV reader on the real recordings and on broken files."""

from __future__ import annotations

import wave

import pytest
import torch

from genlab.config import DataConfig
from genlab.data import load_dataset
from genlab.data.errors import DatasetError
from genlab.data.fsdd import SAMPLE_RATE, SPEAKERS, parse_name, read_wav, recording_files
from genlab.models.autoregressive.wavenet import WaveNet
from genlab.nn.audio import mu_law_decode, mu_law_encode
from genlab.nn.spec import DataSpec
from genlab.rng import make_generators
from genlab.sampling.sequence import sample


def tiny_wavenet(length=40, kernel=2, layers=3, stacks=2, conditional=True, speakers=0):
    torch.manual_seed(0)
    spec = DataSpec(1, 1, length, 8, 10, sample_rate=8000)
    cfg = WaveNet.Config(residual_channels=5, gate_channels=4, skip_channels=6, kernel=kernel,
                         layers_per_stack=layers, stacks=stacks, conditional=conditional, speakers=speakers)
    model = WaveNet(cfg, spec).double().eval()
    with torch.no_grad():  # random weights of unit scale: no output is accidentally flat
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    return model


def test_mu_law_round_trip():
    codes = torch.arange(256)
    assert torch.equal(mu_law_encode(mu_law_decode(codes)).long(), codes)  # every code survives decode/encode
    assert int(mu_law_encode(torch.zeros(1))) == 128 and mu_law_decode(torch.tensor([0, 255])).tolist() == [-1, 1]
    x = torch.linspace(-1, 1, 20001, dtype=torch.float64)
    err = (mu_law_decode(mu_law_encode(x)) - x).abs()
    # Companding: the error grows with the amplitude, about |x| * ln(256) / 255 at most (+ one level near 0).
    assert (err <= x.abs() * 0.022 + 2e-4).all()
    assert torch.equal(mu_law_encode(x), mu_law_encode(x).sort().values)  # monotone


@pytest.mark.parametrize("kernel, layers, stacks", [(2, 3, 2), (3, 2, 1)])
def test_dilated_stack_is_causal_and_sees_its_receptive_field(kernel, layers, stacks):
    model = tiny_wavenet(length=40, kernel=kernel, layers=layers, stacks=stacks)
    x = torch.randint(0, 256, (1, 1, 40)).double() / 255
    e = model.embed_codes(x).detach().requires_grad_(True)
    out = model.from_embedded(e, torch.tensor([3]))
    field = model.receptive_field()
    assert field == 1 + (kernel - 1) * stacks * (2**layers - 1)  # the formula of the docstring
    for t in (0, 5, 20, 39):
        (grad,) = torch.autograd.grad(out[0, :, t].sum(), e, retain_graph=True)
        seen = (grad[0].abs().sum(0) > 0).nonzero().flatten().tolist()
        assert all(s < t for s in seen), f"output {t} depends on input {max(seen)}"
        assert seen == list(range(max(0, t - field), t)), f"output {t} sees {seen}"


def test_queue_cache_draws_the_same_samples_as_the_full_forward_pass():
    model = tiny_wavenet(length=32, layers=3, stacks=2, speakers=3)  # speakers drawn from each clip's generator
    cached = sample(model, 3, make_generators(5, 3), "cpu", label=torch.tensor([1, 4, 7]))
    naive = sample(model, 3, make_generators(5, 3), "cpu", label=torch.tensor([1, 4, 7]), cache=False)
    assert torch.equal(cached, naive)
    assert len(set((cached * 255).round().flatten().tolist())) > 20  # a real draw, not a constant signal
    # The cache's logits are the full pass's at every step (float64; summation order aside).
    y, who = torch.tensor([1, 4, 7]), torch.tensor([2, 0, 1])
    cache, full = model.sampling_cache(3, y, who), model(cached, y, who)
    steps = torch.stack([cache.step(cached, t) for t in range(32)], dim=2)
    torch.testing.assert_close(steps, full, rtol=1e-10, atol=1e-10)


def test_label_and_speaker_change_the_logits_and_reach_the_objective():
    from genlab.objectives.autoregressive import NLL

    model = tiny_wavenet(speakers=6)
    x = torch.randint(0, 256, (2, 1, 40)).double() / 255
    y, who = torch.tensor([0, 0]), torch.tensor([0, 0])
    assert not torch.allclose(model(x, y, who), model(x, y + 1, who))
    assert not torch.allclose(model(x, y, who), model(x, y, who + 1))
    nll = NLL(NLL.Config(), model.data)
    a = nll(model, {"x": x, "y": y, "speaker": who}, "main", 0)["nll_nats"]
    assert not torch.allclose(a, nll(model, {"x": x, "y": y, "speaker": who + 1}, "main", 0)["nll_nats"])
    with pytest.raises(ValueError, match="speaker"):
        nll(model, {"x": x, "y": y}, "main", 0)
    one = sample(model, 2, make_generators(0, 2), "cpu", label=3, speaker=5, until=5)
    with pytest.raises(ValueError, match="out of range"):
        sample(model, 2, make_generators(0, 2), "cpu", label=3, speaker=6)
    assert one.shape == (2, 1, 40)


@pytest.fixture(scope="module")
def fsdd(data_root):
    if not (data_root / "fsdd" / "recordings").is_dir():
        pytest.skip("FSDD recordings not in the shared data folder")
    return load_dataset("fsdd", "test", DataConfig(name="fsdd", root=str(data_root), clip_samples=1000))


def test_fsdd_reader_on_the_real_recordings(fsdd, data_root):
    data = fsdd  # the test split: takes 0-4 of every digit by every speaker (the training split is read alike)
    assert data.images.shape == (300, 1, 1000) and data.images.dtype == torch.uint8
    assert data.labels.bincount().tolist() == [30] * 10
    assert data.extras["speaker"].bincount().tolist() == [50] * len(SPEAKERS)
    assert (data.labels * len(SPEAKERS) + data.extras["speaker"]).bincount().tolist() == [5] * 60
    assert data.spec.sample_rate == SAMPLE_RATE == 8000 and data.spec.shape == (1, 1000)
    names = [parse_name(p) for p in recording_files(data_root / "fsdd" / "recordings")]
    train = torch.tensor([(d, s) for d, s, take in names if take >= 5])
    assert len(train) == 2700 and train[:, 0].bincount().tolist() == [270] * 10
    assert train[:, 1].bincount().tolist() == [450] * 6
    samples = read_wav(data_root / "fsdd" / "recordings" / "7_theo_3.wav")
    with wave.open(str(data_root / "fsdd" / "recordings" / "7_theo_3.wav")) as w:
        assert w.getframerate() == 8000 and len(samples) == w.getnframes()
    assert fsdd.batch(torch.arange(2))["speaker"].shape == (2,)


def _wav(path, rate=8000, channels=1, frames=100):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * frames * channels)
    return path


def test_broken_wav_files_give_one_line_errors(tmp_path):
    assert len(read_wav(_wav(tmp_path / "ok.wav"))) == 100
    truncated = _wav(tmp_path / "cut.wav").read_bytes()[:60]
    (tmp_path / "cut.wav").write_bytes(truncated)
    (tmp_path / "noise.wav").write_bytes(b"this is not a RIFF file at all")
    _wav(tmp_path / "stereo.wav", channels=2)
    _wav(tmp_path / "fast.wav", rate=16000)
    for name, words in (("cut.wav", "samples"), ("noise.wav", "RIFF"), ("stereo.wav", "2 channel"),
                        ("fast.wav", "16000 Hz")):
        with pytest.raises(DatasetError, match=words) as err:
            read_wav(tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)


def test_written_wav_reads_back_as_the_same_codes(tmp_path):
    from genlab.reports.audio import save_clips
    from genlab.reports.page import html_figures

    codes = torch.randint(0, 256, (2, 1, 300))
    paths = save_clips(codes.float() / 255, tmp_path / "out", 8000, labels=[7, 7])
    assert [p.name for p in paths] == ["sample_000_digit7.wav", "sample_001_digit7.wav", "samples.png"]
    again = mu_law_encode(read_wav(paths[0]).double() / 32768)
    assert (again.long() - codes[0, 0]).abs().max() <= 1  # 16-bit rounding may move a code by one level
    assert "<audio controls" in html_figures([("clip", "figures/a.wav")])[0]


def test_download_unpacks_only_verified_recordings(tmp_path, monkeypatch):
    """The release-archive download, from a local file:// archive: members outside recordings/ are ignored,
    the tree checksum decides, and a wrong archive leaves neither the folder nor a temporary copy behind."""
    import tarfile

    from genlab.data import fsdd

    source = tmp_path / "src" / "free-spoken-digit-dataset-1.0.10" / "recordings"
    source.mkdir(parents=True)
    _wav(source / "3_theo_0.wav")
    _wav(source / "4_lucas_12.wav", frames=50)
    (source.parent / "README.md").write_text("not a recording")
    archive = tmp_path / "v1.0.10.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source.parent, arcname=source.parent.name)
    monkeypatch.setattr(fsdd, "ARCHIVE_URLS", (archive.as_uri(),))
    monkeypatch.setattr(fsdd, "N_FILES", 2)
    monkeypatch.setattr(fsdd, "TREE_SHA256", fsdd.tree_sha256(source))
    target = tmp_path / "root" / "fsdd" / "recordings"
    fsdd.fetch_recordings(target)
    assert sorted(p.name for p in target.iterdir()) == ["3_theo_0.wav", "4_lucas_12.wav"]
    monkeypatch.setattr(fsdd, "TREE_SHA256", "0" * 64)
    other = tmp_path / "root2" / "fsdd" / "recordings"
    with pytest.raises(DatasetError, match="could not download the FSDD recordings"):
        fsdd.fetch_recordings(other)
    assert not other.exists() and list(other.parent.iterdir()) == []


def test_eval_plan_calls_audio_examples_clips():
    from genlab.eval.options import EvalOptions
    from genlab.eval.run import describe_plan

    assert DataSpec(1, 1, 4000, 8, sample_rate=8000).example_noun == "clips"
    assert DataSpec(1, 28, 28, 8).example_noun == "images"
    opts = EvalOptions(max_examples=50, examples="clips")
    plan = describe_plan(["exact-nll"], opts, 300, "fsdd/test")
    assert "clips per forward pass" in plan[0] and "50 of 300 fsdd/test clips" in plan[1]
    assert "images" not in " ".join(plan)
