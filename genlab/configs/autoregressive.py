"""Presets of the autoregressive models, one per reproduced result."""

from genlab.configs import preset


@preset("gated-pixelcnn-binarized-mnist")
def gated_pixelcnn_binarized_mnist():
    """Gated PixelCNN on statically binarized MNIST; paper 81.30 nats (van den Oord et al. 2016), target <= 81.5."""
    return {"model": "gated-pixelcnn", "data.name": "binarized-mnist", "model.channels": "64", "model.layers": "8",
            "train.batch_size": "32", "train.steps": "60000", "optim.lr": "1e-3", "optim.schedule": "cosine",
            "optim.warmup_steps": "200", "optim.grad_clip": "100", "train.ckpt_every": "500",
            "train.log_every": "50"}


@preset("gated-pixelcnn-binarized-mnist-cpu")
def gated_pixelcnn_binarized_mnist_cpu():
    """The same model, smaller and shorter, for a 2-core CPU budget of about 40 minutes."""
    return {**gated_pixelcnn_binarized_mnist(), "model.channels": "32", "model.layers": "6",
            "train.steps": "2500"}


@preset("pixelcnn-binarized-mnist")
def pixelcnn_binarized_mnist():
    """PixelCNN (masked convolutions, with its blind spot) on statically binarized MNIST; paper 81.30, target <= 82."""
    return {"model": "pixelcnn", "data.name": "binarized-mnist", "train.batch_size": "64", "train.steps": "40000",
            "optim.lr": "1e-3", "optim.schedule": "cosine", "optim.warmup_steps": "200",
            "train.ckpt_every": "1000", "train.log_every": "50"}


@preset("pixelrnn-binarized-mnist")
def pixelrnn_binarized_mnist():
    """Diagonal BiLSTM PixelRNN on statically binarized MNIST; paper 79.20 nats (7 layers), for a GPU."""
    return {"model": "pixelrnn", "data.name": "binarized-mnist", "model.layer": "diagonal", "model.hidden": "64",
            "model.layers": "7", "model.head_channels": "128", "train.batch_size": "32", "train.steps": "60000",
            "optim.lr": "1e-3", "optim.schedule": "cosine", "optim.warmup_steps": "200", "optim.grad_clip": "100",
            "train.ckpt_every": "1000", "train.log_every": "50"}


@preset("pixelrnn-binarized-mnist-cpu")
def pixelrnn_binarized_mnist_cpu():
    """A small Row LSTM PixelRNN for a CPU budget of about 15 minutes (2-2.5 s a step on a loaded 2-core machine)."""
    return {**pixelrnn_binarized_mnist(), "model.layer": "row", "model.hidden": "16", "model.layers": "2",
            "model.head_channels": "32", "train.batch_size": "16", "train.steps": "300", "train.ckpt_every": "100",
            "optim.warmup_steps": "50"}


@preset("wavenet-fsdd")
def wavenet_fsdd():
    """Class-conditional WaveNet on FSDD (0.5 s mu-law clips at 8 kHz, receptive field 1,021 samples), for a GPU."""
    return {"model": "wavenet", "data.name": "fsdd", "data.clip_samples": "4000", "model.residual_channels": "64",
            "model.gate_channels": "64", "model.skip_channels": "128", "model.layers_per_stack": "9",
            "model.stacks": "2", "train.batch_size": "16", "train.steps": "20000", "optim.lr": "1e-3",
            "optim.schedule": "cosine", "optim.warmup_steps": "200", "optim.grad_clip": "1.0",
            "train.ckpt_every": "1000", "train.log_every": "50"}


@preset("wavenet-fsdd-cpu")
def wavenet_fsdd_cpu():
    """A small WaveNet (receptive field 511 samples, 64 ms) for a CPU budget of about 15 minutes wall
    on a loaded 2-core machine: the step count was set from the measured step time there."""
    return {**wavenet_fsdd(), "model.residual_channels": "16", "model.gate_channels": "16",
            "model.skip_channels": "32", "model.layers_per_stack": "8", "train.batch_size": "4",
            "train.steps": "300", "train.ckpt_every": "100", "optim.warmup_steps": "20", "optim.lr": "2e-3"}
