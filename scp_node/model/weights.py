"""The weights file: a ``torch.save`` dict with a metadata header and the state_dict.

Format (``format = "scp-node-localizer"``, ``format_version = 1``), loadable with
``torch.load(path, weights_only=True)`` (plain tensors and JSON-like values only, no pickled code)::

    {
      "format": "scp-node-localizer",
      "format_version": 1,
      "metadata": {
        "name": "lstv-localizer", "version": "1.0.0",
        "levels": ["L1-L2", ..., "L5-S1"],
        "architecture": {NetConfig fields: in_channels, levels, base, depth, dropout, input_size},
        "normalisation": "spatial-softmax",
        "input": "...", "training_seed": 0, "training": {...},
        "lstv_threshold": 0.42, "score": "...",
      },
      "state_dict": {...}
    }

The identity of a weights file is the SHA-256 of its bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from scp_node.model.network import HeatmapUNet, NetConfig

FORMAT = "scp-node-localizer"
FORMAT_VERSION = 1
REFERENCE_NAME = "reference_localizer.pt"


class WeightsError(ValueError):
    """The file is not a usable localizer checkpoint."""


@dataclass(frozen=True)
class LoadedWeights:
    path: Path
    sha256: str
    metadata: dict[str, Any]
    config: NetConfig
    state_dict: dict[str, torch.Tensor]

    def build(self) -> HeatmapUNet:
        model = HeatmapUNet(self.config)
        model.load_state_dict(self.state_dict)
        return model


def reference_path() -> Path:
    """The packaged reference weights (trained on normal phantoms only)."""
    return Path(str(resources.files("scp_node") / "data" / REFERENCE_NAME))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save(path: Path, model: HeatmapUNet, metadata: dict[str, Any]) -> str:
    """Write a checkpoint (state_dict stored as float32 on CPU); returns its SHA-256."""
    meta = dict(metadata)
    meta["architecture"] = model.config.to_json()
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": meta,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return sha256_file(path)


def load(path: Path | None = None) -> LoadedWeights:
    """Load and validate a checkpoint (``None`` = the reference weights)."""
    return _load_cached(str(path or reference_path()))


@lru_cache(maxsize=4)
def _load_cached(path_str: str) -> LoadedWeights:
    path = Path(path_str)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not a checkpoint"
        raise WeightsError(f"{path}: not a loadable torch checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path}: not a {FORMAT} checkpoint")
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise WeightsError(
            f"{path}: format version {payload['format_version']} is newer than supported"
        )
    meta = dict(payload["metadata"])
    try:
        config = NetConfig(**meta["architecture"])
    except (KeyError, TypeError) as exc:
        raise WeightsError(f"{path}: bad architecture metadata: {exc}") from exc
    return LoadedWeights(path, sha256_file(path), meta, config, payload["state_dict"])
