"""GPU benchmark of the localizer: eager vs torch.compile, fp32 vs bf16, CUDA-event timing.

One study = the engine's forward work for a 20-slice 512x512 series: ``context_slices x T``
inputs of the network size (plus the 512->input resample on the device). Warm-up first, then the
median of the repeats, timed with CUDA events. Without CUDA it says so and times the CPU eager
fp32 path only.

    python bench/gpu_inference.py [--repeats 50] [--mc 8] [--context 3] [--no-compile]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from scp_node.model.network import enable_mc_dropout, spatial_softmax
from scp_node.model.weights import load


def _run(model: torch.nn.Module, raw: torch.Tensor, size: int, mc: int, amp: bool) -> torch.Tensor:
    x = raw.float()
    lo = torch.quantile(x.flatten(1), 0.01, dim=1)[:, None, None, None]
    hi = torch.quantile(x.flatten(1), 0.99, dim=1)[:, None, None, None]
    x = ((x - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1.5)
    x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.repeat_interleave(mc, dim=0)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        return spatial_softmax(model(x))


def _time(fn, device: torch.device, repeats: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--mc", type=int, default=8)
    parser.add_argument("--context", type=int, default=3)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-compile", action="store_true")
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    if not cuda:
        print("CUDA not available: timing CPU eager fp32 only")
    weights = load()
    model = weights.build().to(device)
    enable_mc_dropout(model)
    size = weights.config.input_size
    raw = torch.randint(0, 4000, (args.context, 1, args.size, args.size), device=device)
    rows = []
    variants = [("eager", False)] + ([("eager", True)] if cuda else [])
    if cuda and not args.no_compile:
        variants += [("compile", False), ("compile", True)]
    compiled = None
    for mode, amp in variants:
        net = model
        if mode == "compile":
            compiled = compiled or torch.compile(model)
            net = compiled
        try:
            with torch.inference_mode():
                ms = _time(
                    lambda net=net, amp=amp: _run(net, raw, size, args.mc, amp),
                    device,
                    args.repeats,
                )
            rows.append((mode, "bf16" if amp else "fp32", f"{ms:.2f}"))
        except Exception as exc:  # noqa: BLE001 - report and go on (e.g. no compiler toolchain)
            rows.append((mode, "bf16" if amp else "fp32", f"failed: {type(exc).__name__}"))
    name = torch.cuda.get_device_name(0) if cuda else "cpu"
    print(
        f"device {name}; torch {torch.__version__}; {args.context} slices x T={args.mc} "
        f"({args.context * args.mc} inputs of {size}x{size}) from {args.size}x{args.size}"
    )
    print(f"{'mode':<8} {'dtype':<5} median ms/study ({args.repeats} repeats, CUDA events)")
    for mode, dtype, ms in rows:
        print(f"{mode:<8} {dtype:<5} {ms}")


if __name__ == "__main__":
    main()
