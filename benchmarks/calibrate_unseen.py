"""How well a calibrated device predicts networks of families it has never seen.

What ``perfcast calibrate`` buys on the user's own machine for the user's own
networks. This benchmark calibrates this machine (or takes a device file made by calibrate),
then measures and predicts 26 small plain-PyTorch networks of families that are in no space and
no zoo entry of perfcast (random weights, batch 1, exported to ONNX by perfcast's torch front end):

- MLP-Mixer (two sizes), gMLP, ConvMixer, a Perceiver-like cross-attention encoder;
- a WaveNet-like gated dilated 1-D conv stack, a temporal conv net, a depthwise-separable 1-D
  sensor net, a 1-D ResNet for ECG, TextCNN, a CRNN (conv + bidirectional LSTM);
- a GRU language model, a bidirectional LSTM tagger;
- a siamese CNN, a PointNet-like MLP over points, LeNet-5, an Inception-style branch net,
  a multi-dilation context net;
- tiny U-Nets of depth 2 and 4, a convolutional autoencoder, a VAE-style decoder, a dense
  autoencoder, a residual MLP for tabular data;
- transformer decoders (causal self-attention) of widths 96 and 320.

Each network is measured by the profiler (drift-corrected median latency, the same protocol as
calibrate, corrected to the drift baselines the device file records) and predicted with
``--device DEV.json`` (and, for comparison, with the default device as shipped, without
calibration). Printed: the share of networks whose
prediction is within +-10 % and +-20 % of the measurement, the MAPE, the share of measurements
inside the prediction's 90 % interval, and the table per network.

    taskset -c 0 .venv/bin/python benchmarks/calibrate_unseen.py [--device DEV.json] [--limit N]

Without ``--device`` it runs ``perfcast calibrate`` first (about four minutes on one core).
``--limit N`` measures only the first N networks (a smoke run).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from perfcast import api
from perfcast.cli.output import table
from perfcast.devices import load_device
from perfcast.frontends.torch import export_module
from perfcast.profiling.protocol import profile


# --- building blocks ------------------------------------------------------------------------------
class MixerBlock(nn.Module):
    def __init__(self, tokens: int, dim: int, token_hidden: int, channel_hidden: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.token_mlp = nn.Sequential(nn.Linear(tokens, token_hidden), nn.GELU(), nn.Linear(token_hidden, tokens))
        self.channel_mlp = nn.Sequential(nn.Linear(dim, channel_hidden), nn.GELU(), nn.Linear(channel_hidden, dim))

    def forward(self, x):
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class MLPMixer(nn.Module):
    def __init__(self, res: int, patch: int, dim: int, depth: int, classes: int = 100) -> None:
        super().__init__()
        tokens = (res // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[MixerBlock(tokens, dim, dim // 2, dim * 4) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.stem(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(x)).mean(dim=1))


class SpatialGatingBlock(nn.Module):
    """gMLP block: channel projection, then half the channels gate the other half after a token-mixing linear."""

    def __init__(self, tokens: int, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm, self.proj_in = nn.LayerNorm(dim), nn.Linear(dim, 2 * hidden)
        self.gate_norm, self.spatial = nn.LayerNorm(hidden), nn.Linear(tokens, tokens)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x):
        u, v = nn.functional.gelu(self.proj_in(self.norm(x))).chunk(2, dim=-1)
        v = self.spatial(self.gate_norm(v).transpose(1, 2)).transpose(1, 2)
        return x + self.proj_out(u * v)


class GMLP(nn.Module):
    def __init__(self, res: int = 32, patch: int = 4, dim: int = 128, depth: int = 6) -> None:
        super().__init__()
        tokens = (res // patch) ** 2
        self.stem = nn.Conv2d(3, dim, patch, patch)
        self.blocks = nn.Sequential(*[SpatialGatingBlock(tokens, dim, dim * 3) for _ in range(depth)])
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x).flatten(2).transpose(1, 2)).mean(dim=1))


class Residual(nn.Module):
    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return x + self.fn(x)


def conv_mixer(dim: int = 192, depth: int = 6, kernel: int = 7, patch: int = 4) -> nn.Module:
    layers = [nn.Conv2d(3, dim, patch, patch), nn.GELU(), nn.BatchNorm2d(dim)]
    for _ in range(depth):
        layers += [Residual(nn.Sequential(nn.Conv2d(dim, dim, kernel, groups=dim, padding=kernel // 2), nn.GELU(),
                                          nn.BatchNorm2d(dim))),
                   nn.Conv2d(dim, dim, 1), nn.GELU(), nn.BatchNorm2d(dim)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(dim, 10))


class Perceiver(nn.Module):
    """A learned latent array cross-attends to the input once, then self-attends."""

    def __init__(self, in_dim: int = 32, latents: int = 64, dim: int = 128, layers: int = 3) -> None:
        super().__init__()
        self.latent = nn.Parameter(torch.randn(1, latents, dim))
        self.in_proj = nn.Linear(in_dim, dim)
        self.cross = nn.MultiheadAttention(dim, 4, batch_first=True)
        self.self_layers = nn.ModuleList(
            [nn.TransformerEncoderLayer(dim, 4, dim * 2, dropout=0.0, batch_first=True) for _ in range(layers)])
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        kv = self.in_proj(x)
        z = self.latent.expand(x.shape[0], -1, -1)
        z = z + self.cross(z, kv, kv, need_weights=False)[0]
        for layer in self.self_layers:
            z = layer(z)
        return self.head(z.mean(dim=1))


class GatedDilated(nn.Module):
    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.filter = nn.Conv1d(channels, channels, 2, dilation=dilation, padding=dilation)
        self.gate = nn.Conv1d(channels, channels, 2, dilation=dilation, padding=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x):
        n = x.shape[-1]
        h = torch.tanh(self.filter(x)[..., :n]) * torch.sigmoid(self.gate(x)[..., :n])
        return x + self.out(h)


def wavenet(channels: int = 32, stacks: int = 2, layers: int = 8, samples: int = 4000) -> tuple[nn.Module, tuple]:
    blocks = [GatedDilated(channels, 2 ** i) for _ in range(stacks) for i in range(layers)]
    net = nn.Sequential(nn.Conv1d(1, channels, 1), *blocks, nn.ReLU(), nn.Conv1d(channels, 256, 1))
    return net, (torch.randn(1, 1, samples),)


def tcn(channels: int = 64, levels: int = 6, length: int = 512) -> tuple[nn.Module, tuple]:
    layers: list[nn.Module] = [nn.Conv1d(8, channels, 1)]
    for i in range(levels):
        d = 2 ** i
        causal = [nn.ConstantPad1d((2 * d, 0), 0.0), nn.Conv1d(channels, channels, 3, dilation=d), nn.ReLU()]
        layers.append(Residual(nn.Sequential(*causal, nn.ConstantPad1d((2 * d, 0), 0.0),
                                             nn.Conv1d(channels, channels, 3, dilation=d), nn.ReLU())))
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(channels, 6))
    return net, (torch.randn(1, 8, length),)


def separable_1d(length: int = 1024) -> tuple[nn.Module, tuple]:
    layers: list[nn.Module] = [nn.Conv1d(6, 32, 5, padding=2), nn.BatchNorm1d(32), nn.ReLU6()]
    width = 32
    for out, stride in ((64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1)):
        layers += [nn.Conv1d(width, width, 5, stride, 2, groups=width), nn.BatchNorm1d(width), nn.ReLU6(),
                   nn.Conv1d(width, out, 1), nn.BatchNorm1d(out), nn.ReLU6()]
        width = out
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(width, 12))
    return net, (torch.randn(1, 6, length),)


class ResBlock1d(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(cin, cout, 7, stride, 3, bias=False), nn.BatchNorm1d(cout), nn.ReLU(),
                                  nn.Conv1d(cout, cout, 7, 1, 3, bias=False), nn.BatchNorm1d(cout))
        self.skip = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout)) \
            if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return torch.relu(self.body(x) + self.skip(x))


def resnet1d_ecg(length: int = 2500) -> tuple[nn.Module, tuple]:
    net = nn.Sequential(nn.Conv1d(12, 32, 15, 2, 7), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(3, 2, 1),
                        ResBlock1d(32, 32, 1), ResBlock1d(32, 64, 2), ResBlock1d(64, 128, 2), ResBlock1d(128, 128, 2),
                        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(128, 5))
    return net, (torch.randn(1, 12, length),)


class TextCNN(nn.Module):
    def __init__(self, vocab: int = 20000, dim: int = 128, filters: int = 100, length: int = 256) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.convs = nn.ModuleList([nn.Conv1d(dim, filters, k) for k in (3, 4, 5)])
        self.head = nn.Linear(3 * filters, 2)

    def forward(self, tokens):
        x = self.embed(tokens).transpose(1, 2)
        return self.head(torch.cat([torch.relu(c(x)).amax(dim=-1) for c in self.convs], dim=1))


class CRNN(nn.Module):
    """OCR-style: a small CNN over a 32 x 128 text line, then a bidirectional LSTM over its columns."""

    def __init__(self, hidden: int = 128, classes: int = 37) -> None:
        super().__init__()
        self.cnn = nn.Sequential(nn.Conv2d(1, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
                                 nn.Conv2d(64, 128, 3, 1, 1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d((2, 1)),
                                 nn.Conv2d(128, 128, 3, 1, 1), nn.ReLU(), nn.MaxPool2d((4, 1)))
        self.rnn = nn.LSTM(128, hidden, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        f = self.cnn(x).squeeze(2).transpose(1, 2)
        return self.head(self.rnn(f)[0])


class GRULanguageModel(nn.Module):
    def __init__(self, vocab: int = 10000, dim: int = 256, layers: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, layers, batch_first=True)
        self.head = nn.Linear(dim, vocab)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


class BiLSTMTagger(nn.Module):
    def __init__(self, vocab: int = 30000, dim: int = 100, hidden: int = 200, tags: int = 17) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.rnn = nn.LSTM(dim, hidden, 2, bidirectional=True, batch_first=True)
        self.head = nn.Linear(2 * hidden, tags)

    def forward(self, tokens):
        return self.head(self.rnn(self.embed(tokens))[0])


class Siamese(nn.Module):
    """One CNN applied to two 64 x 64 images; the head sees their absolute difference."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(),
                                   nn.MaxPool2d(2), nn.Conv2d(64, 128, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                                   nn.Flatten(), nn.Linear(128, 128))
        self.head = nn.Linear(128, 1)

    def forward(self, a, b):
        return torch.sigmoid(self.head((self.tower(a) - self.tower(b)).abs()))


class PointNet(nn.Module):
    def __init__(self, points: int = 1024, classes: int = 40) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(3, 64, 1), nn.BatchNorm1d(64), nn.ReLU(), nn.Conv1d(64, 128, 1),
                                 nn.BatchNorm1d(128), nn.ReLU(), nn.Conv1d(128, 512, 1), nn.BatchNorm1d(512), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):
        return self.head(self.mlp(x).amax(dim=-1))


def lenet5() -> tuple[nn.Module, tuple]:
    net = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(),
                        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(),
                        nn.Linear(84, 10))
    return net, (torch.randn(1, 1, 28, 28),)


class InceptionBlock(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, width, 1)
        self.b3 = nn.Sequential(nn.Conv2d(cin, width // 2, 1), nn.ReLU(), nn.Conv2d(width // 2, width, 3, padding=1))
        self.b5 = nn.Sequential(nn.Conv2d(cin, width // 4, 1), nn.ReLU(),
                                nn.Conv2d(width // 4, width // 2, 5, padding=2))
        self.pool = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, width // 2, 1))

    def forward(self, x):
        return torch.relu(torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], dim=1))


def inception_net(res: int = 64) -> tuple[nn.Module, tuple]:
    net = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1), nn.ReLU(), InceptionBlock(64, 64), nn.MaxPool2d(2),
                        InceptionBlock(192, 96), nn.MaxPool2d(2), InceptionBlock(288, 128),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(384, 100))
    return net, (torch.randn(1, 3, res, res),)


class ContextNet(nn.Module):
    """Parallel 3x3 convolutions at dilations 1, 2, 4 and 8, summed, repeated."""

    def __init__(self, width: int = 48, blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 2, 1)
        self.blocks = nn.ModuleList([
            nn.ModuleList([nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)])
            for _ in range(blocks)])
        self.head = nn.Conv2d(width, 19, 1)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        for branches in self.blocks:
            x = torch.relu(x + sum(b(x) for b in branches))
        return self.head(x)


class TinyUNet(nn.Module):
    def __init__(self, depth: int, base: int) -> None:
        super().__init__()
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([self._double(3 if i == 0 else widths[i - 1], widths[i]) for i in range(depth)])
        self.bottom = self._double(widths[depth - 1], widths[depth])
        self.up = nn.ModuleList([nn.ConvTranspose2d(widths[i + 1], widths[i], 2, 2) for i in reversed(range(depth))])
        self.merge = nn.ModuleList([self._double(2 * widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], 2, 1)

    @staticmethod
    def _double(cin: int, cout: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())

    def forward(self, x):
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = nn.functional.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, merge, skip in zip(self.up, self.merge, reversed(skips)):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


def conv_autoencoder() -> tuple[nn.Module, tuple]:
    net = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(),
                        nn.Conv2d(64, 128, 3, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(),
                        nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Sigmoid())
    return net, (torch.randn(1, 3, 96, 96),)


class VAEDecoder(nn.Module):
    def __init__(self, latent: int = 64) -> None:
        super().__init__()
        self.fc = nn.Linear(latent, 256 * 4 * 4)
        self.deconv = nn.Sequential(nn.ConvTranspose2d(256, 128, 4, 2, 1), nn.BatchNorm2d(128), nn.LeakyReLU(0.2),
                                    nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.LeakyReLU(0.2),
                                    nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.BatchNorm2d(32), nn.LeakyReLU(0.2),
                                    nn.ConvTranspose2d(32, 3, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.deconv(self.fc(z).reshape(-1, 256, 4, 4))


def dense_autoencoder() -> tuple[nn.Module, tuple]:
    sizes = (784, 512, 256, 64, 256, 512, 784)
    layers: list[nn.Module] = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1], nn.Sigmoid()), (torch.randn(1, 784),)


class ResidualMLP(nn.Module):
    def __init__(self, features: int = 64, width: int = 512, blocks: int = 4) -> None:
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width * 2), nn.SiLU(),
                                                   nn.Linear(width * 2, width)) for _ in range(blocks)])
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        x = self.inp(x)
        for block in self.blocks:
            x = x + block(x)
        return self.out(x)


class CausalDecoder(nn.Module):
    """A decoder-only transformer on float features (no token embedding), causal mask, pre-norm."""

    def __init__(self, dim: int, heads: int, layers: int, length: int) -> None:
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        self.inp = nn.Linear(16, dim)
        self.layers = nn.ModuleList([nn.TransformerEncoderLayer(dim, heads, dim * 4, dropout=0.0, batch_first=True,
                                                                norm_first=True) for _ in range(layers)])
        self.out = nn.Linear(dim, 16)
        self.register_buffer("mask", torch.triu(torch.full((length, length), float("-inf")), 1))

    def forward(self, x):
        h = self.inp(x) + self.pos
        for layer in self.layers:
            h = layer(h, src_mask=self.mask)
        return self.out(h)


# --- the benchmark set --------------------------------------------------------------------------------
def _tokens(vocab: int, length: int) -> tuple:
    return (torch.randint(0, vocab, (1, length)),)


def unseen_networks() -> list[tuple[str, nn.Module, tuple]]:
    """(name, module, example inputs) of the 26 networks, built with a fixed torch seed."""
    torch.manual_seed(0)
    img = lambda c, r: (torch.randn(1, c, r, r),)  # noqa: E731
    return [
        ("mlp_mixer_s", MLPMixer(32, 4, 128, 4), img(3, 32)),
        ("mlp_mixer_m", MLPMixer(64, 8, 256, 6), img(3, 64)),
        ("gmlp", GMLP(), img(3, 32)),
        ("conv_mixer", conv_mixer(), img(3, 64)),
        ("perceiver", Perceiver(), (torch.randn(1, 1024, 32),)),
        ("wavenet", *wavenet()),
        ("tcn", *tcn()),
        ("separable_1d", *separable_1d()),
        ("resnet1d_ecg", *resnet1d_ecg()),
        ("textcnn", TextCNN(), _tokens(20000, 256)),
        ("crnn", CRNN(), (torch.randn(1, 1, 32, 128),)),
        ("gru_lm", GRULanguageModel(), _tokens(10000, 64)),
        ("bilstm_tagger", BiLSTMTagger(), _tokens(30000, 48)),
        ("siamese", Siamese(), (torch.randn(1, 1, 64, 64), torch.randn(1, 1, 64, 64))),
        ("pointnet", PointNet(), (torch.randn(1, 3, 1024),)),
        ("lenet5", *lenet5()),
        ("inception_net", *inception_net()),
        ("context_net", ContextNet(), img(3, 128)),
        ("unet_depth2", TinyUNet(2, 16), img(3, 128)),
        ("unet_depth4", TinyUNet(4, 8), img(3, 128)),
        ("conv_autoencoder", *conv_autoencoder()),
        ("vae_decoder", VAEDecoder(), (torch.randn(1, 64),)),
        ("dense_autoencoder", *dense_autoencoder()),
        ("residual_mlp", ResidualMLP(), (torch.randn(1, 64),)),
        ("decoder_w96", CausalDecoder(96, 3, 4, 128), (torch.randn(1, 128, 16),)),
        ("decoder_w320", CausalDecoder(320, 5, 3, 64), (torch.randn(1, 64, 16),)),
    ]


def export_all(nets, folder: Path) -> list[Path]:
    paths = []
    for name, module, inputs in nets:
        path = folder / f"{name}.onnx"
        path.write_bytes(export_module(module, inputs).SerializeToString())
        paths.append(path)
    return paths


# --- running it ----------------------------------------------------------------------------------------
def calibrated_device(args, folder: Path) -> str:
    if args.device:
        return args.device
    out = folder / "calibrated.json"
    summary = api.calibrate(out, runtime="ort-cpu", count=args.count, progress=True, workers=args.workers,
                            time_budget_s=args.time_budget)
    c = summary["calibration"]
    print(f"calibrated on {c['measured']} networks in {c['profiling_s'] / 60:.1f} min", file=sys.stderr)
    return str(out)


def report(names: list[str], macs: list[int], measured: np.ndarray, predicted: np.ndarray,
           intervals: np.ndarray, in_domain: list[bool]) -> str:
    """The per-network table and the summary line; ``intervals`` holds each prediction's 90 %
    interval (lo, hi) in ms."""
    ok = ~np.isnan(measured)
    err = (predicted[ok] - measured[ok]) / measured[ok]
    inside = (intervals[:, 0] <= measured) & (measured <= intervals[:, 1])
    rows = [[n, f"{m / 1e6:.1f}", f"{y:.3f}" if y == y else "failed", f"{p:.3f}",
             f"{lo:.3f}-{hi:.3f}", f"{100 * (p - y) / y:+.1f}%" if y == y else "-",
             ("yes" if c else "no") if y == y else "-", "yes" if d else "no"]
            for n, m, y, p, (lo, hi), c, d in zip(names, macs, measured, predicted, intervals, inside, in_domain)]
    lines = [table(["network", "MMACs", "measured ms", "predicted ms", "90% interval", "error", "inside",
                    "in domain"], rows, "lrrrrrll"), ""]
    if err.size:
        lines.append(f"{err.size} networks measured: within +-10% {100 * np.mean(np.abs(err) <= 0.1):.0f}%, "
                     f"within +-20% {100 * np.mean(np.abs(err) <= 0.2):.0f}%, MAPE {100 * np.mean(np.abs(err)):.1f}%, "
                     f"median APE {100 * np.median(np.abs(err)):.1f}%, inside the 90% interval "
                     f"{100 * np.mean(inside[ok]):.0f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="a device file from perfcast calibrate (default: calibrate first)")
    parser.add_argument("--limit", type=int, default=None, help="measure only the first N networks (smoke run)")
    parser.add_argument("--count", type=int, default=36, help="calibration networks when calibrating first")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--time-budget", type=float, default=0.6, metavar="S")
    args = parser.parse_args(argv)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # torchvision-missing notices
    nets = unseen_networks()[: args.limit]
    with tempfile.TemporaryDirectory(prefix="perfcast-unseen-") as tmp:
        folder = Path(tmp)
        device = calibrated_device(args, folder)
        paths = export_all(nets, folder)
        macs = [api.analyze(path)["macs"] for path in paths]
        rows = api.predict(paths, device=device)
        shipped = api.predict(paths)  # the default device as shipped, without calibration
        start = time.monotonic()
        calibration = load_device(device).made.get("calibration", {})
        measurements = profile(paths, runtime="ort-cpu", threads=1, workers=args.workers,
                               time_budget_s=args.time_budget, memory=False, single_model_errors=False,
                               reference_baseline_ms=calibration.get("reference_baseline_ms"),
                               memory_reference_baseline_ms=calibration.get("memory_reference_baseline_ms"))
        seconds = time.monotonic() - start
    measured = np.array([m.latency_ms["median"] if m.ok else np.nan for m in measurements])
    predicted = np.array([r["latency_ms"] for r in rows])
    intervals = np.array([r["latency_ms_interval"] for r in rows], dtype=float)
    print(report([n for n, _, _ in nets], macs, measured, predicted, intervals, [r["in_domain"] for r in rows]))
    print(f"device {rows[0]['device']}; profiling took {seconds:.0f} s")
    ok = ~np.isnan(measured)
    plain = np.array([r["latency_ms"] for r in shipped])
    err = (plain[ok] - measured[ok]) / measured[ok]
    print(f"the default device {shipped[0]['device']} ({shipped[0]['predictor']}) without calibration: within +-10% "
          f"{100 * np.mean(np.abs(err) <= 0.1):.0f}%, within +-20% {100 * np.mean(np.abs(err) <= 0.2):.0f}%, "
          f"MAPE {100 * np.mean(np.abs(err)):.1f}% (this machine may differ from the one measured for it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
