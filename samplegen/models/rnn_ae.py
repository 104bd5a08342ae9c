"""Recurrent per-frame STFT auto-encoder: an RNN/GRU/LSTM over frames down to `hidden` values per
frame, and another back up to the full frame width (the original's RNN_AE)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from samplegen.models.base import SampleModel
from samplegen.models.registry import ModelRejected, register

CELLS: dict[str, type[nn.Module]] = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


@dataclass(frozen=True)
class RNNAEHParams:
    """cell: rnn | gru | lstm; hidden: code values per frame; encode_depth / decode_depth:
    stacked recurrent layers in the encoder / decoder (the decoder's width is the frame width)."""

    cell: str = "rnn"
    hidden: int = 30
    encode_depth: int = 2
    decode_depth: int = 2

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"cell {self.cell!r} is not one of {tuple(CELLS)}")
        for key in ("hidden", "encode_depth", "decode_depth"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, got {getattr(self, key)}")


@register(RNNAEHParams)
class RNNAE(SampleModel):
    """STFT (B, bins, frames) -> codes (B, hidden, frames) -> STFT (B, bins, frames)."""

    name = "rnn_ae"
    kind = "outer_stft"

    def __init__(self, hparams: RNNAEHParams, input_shape: tuple[int, ...]) -> None:
        super().__init__(hparams, input_shape)
        if len(self.input_shape) != 2:
            raise ModelRejected(f"model rnn_ae: needs a (bins, frames) input, got {input_shape}")
        cell = CELLS[hparams.cell]
        bins = self.input_shape[0]
        self.encoder = cell(bins, hparams.hidden, num_layers=hparams.encode_depth, batch_first=True)
        self.decoder = cell(hparams.hidden, bins, num_layers=hparams.decode_depth, batch_first=True)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return (self.hparams.hidden, self.input_shape[1])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x.transpose(1, 2))[0].transpose(1, 2)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z.transpose(1, 2))[0].transpose(1, 2)
