"""CPU against CUDA: the same studies screened on both devices give the same scores and verdicts.

The Monte-Carlo dropout masks are drawn on the CPU from the engine's seed and moved to the
device (``LocalizerEngine.dropout_masks``), so a GPU runs the same subnetworks as the CPU the
threshold was chosen on; what is left is arithmetic (bf16 autocast with ``--amp``, TF32 and
kernel order otherwise). Run on a machine with CUDA (``bench/gpu_session.sh`` does):

    python bench/device_agreement.py [--studies 20] [--amp]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from scp_node.config import ModelSettings
from scp_node.model import datasets, evaluate
from scp_node.model.engine import LocalizerEngine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=20, help="site-like held-out phantoms")
    parser.add_argument("--amp", action="store_true", help="bf16 autocast on the GPU")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 0
    cpu = LocalizerEngine.from_settings(ModelSettings(device="cpu"))
    gpu = LocalizerEngine.from_settings(ModelSettings(device="cuda", amp=args.amp))
    differences, same_verdict = [], 0
    variants = ("normal", "lumbarization", "sacralization")
    for i in range(args.studies):
        variant = variants[i % 3]
        phantom = evaluate._combined(variant, datasets.EVALUATION_SEED0 + i)
        volume = datasets.phantom_series(phantom)
        a, b = cpu.analyze(volume), gpu.analyze(volume)
        differences.append(abs(a.lstv_score - b.lstv_score))
        verdict = (a.assessable, a.lstv_suspected) == (b.assessable, b.lstv_suspected)
        same_verdict += int(verdict)
        print(
            f"{variant:14s} cpu {a.lstv_score:+.4f} gpu {b.lstv_score:+.4f} same verdict {verdict}"
        )
    d = np.asarray(differences)
    print(
        f"{gpu.device_name}: |score difference| median {np.median(d):.2e}, max {d.max():.2e}; "
        f"same verdict {same_verdict}/{args.studies}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
