"""A compact 2D U-Net that regresses one heatmap per disc level.

The network outputs raw logits ``[N, levels, H, W]``; the heatmap of a level is the *spatial
softmax* of
its logits over all H*W pixels, i.e. a probability distribution over where the disc centre is (it
sums
to 1). That normalisation makes Shannon entropy and mutual information well defined without any
extra
calibration. Dropout2d layers in the bottleneck and decoder stay active for Monte-Carlo sampling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Architecture hyper-parameters (stored in the weights metadata)."""

    in_channels: int = 1
    levels: int = 5
    base: int = 16
    depth: int = 4
    dropout: float = 0.15
    input_size: int = 128

    def to_json(self) -> dict[str, int | float]:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class HeatmapUNet(nn.Module):
    """U-Net: ``depth`` down-sampling stages, channel widths base * (1, 2, 4, 6, 8, ...)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base * m for m in (1, 2, 4, 6, 8, 8, 8)[: config.depth + 1]]
        #: channels at each dropout of :meth:`decode`, in the order they are applied
        self.dropout_channels = widths[::-1]
        self.down = nn.ModuleList()
        cin = config.in_channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout2d(config.dropout)
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        for i in range(config.depth, 0, -1):
            self.up.append(nn.ConvTranspose2d(widths[i], widths[i - 1], 2, stride=2))
            self.merge.append(_block(2 * widths[i - 1], widths[i - 1]))
        self.head = nn.Conv2d(widths[0], config.levels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(*self.encode(x))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The contracting path: (bottleneck features, skip features, shallowest first). It holds
        no dropout, so it is the same for every Monte-Carlo pass of an input."""
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
                x = self.pool(x)
        return x, skips

    def decode(
        self,
        x: torch.Tensor,
        skips: list[torch.Tensor],
        masks: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The expanding path from :meth:`encode`'s output to the logits (dropout here).

        ``masks``: given dropout masks ``[N, C, 1, 1]`` (0 or 1 / (1 - p), one per entry of
        :attr:`dropout_channels`) applied instead of the dropout layers' own random draws."""
        skips = list(skips)
        drops = iter(masks) if masks is not None else None

        def drop(features: torch.Tensor) -> torch.Tensor:
            return self.drop(features) if drops is None else features * next(drops)

        x = drop(x)
        for up, merge in zip(self.up, self.merge, strict=True):
            x = up(x)
            x = merge(torch.cat([x, skips.pop()], dim=1))
            x = drop(x)
        return self.head(x)

    def dropout_masks(self, rows: int, generator: torch.Generator) -> list[torch.Tensor]:
        """Channel dropout masks for ``rows`` inputs, drawn on the CPU from ``generator`` the
        way :class:`torch.nn.Dropout2d` draws them (Bernoulli(1 - p) scaled by 1 / (1 - p)),
        layer by layer: the same masks whatever device the network runs on."""
        keep = 1.0 - self.drop.p
        return [
            torch.empty(rows, c, 1, 1).bernoulli_(keep, generator=generator).div_(keep)
            for c in self.dropout_channels
        ]


def spatial_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Per level probability maps: softmax over the H*W pixels of each ``[N, L, H, W]`` channel."""
    n, levels, h, w = logits.shape
    return torch.softmax(logits.float().reshape(n, levels, h * w), dim=-1).reshape(n, levels, h, w)


def enable_mc_dropout(model: nn.Module) -> None:
    """Eval mode (frozen BatchNorm statistics) with the dropout layers switched back on."""
    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            module.train()


def set_dropout(model: nn.Module, active: bool) -> None:
    """Switch the dropout layers on (MC sampling) or off (one deterministic pass)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout | nn.Dropout2d):
            module.train(active)
