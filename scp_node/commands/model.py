"""``scp-node phantom``, ``scp-node model train|evaluate`` and ``scp-node infer``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from scp_node.cli import add_config_argument

#: ``model train`` writes here unless told otherwise (never the packaged weights by default).
DEFAULT_TRAIN_OUT = "lstv-localizer.pt"


def register(subparsers: Any) -> None:
    ph = subparsers.add_parser(
        "phantom",
        help="write a synthetic sagittal T2 lumbar spine study (DICOM MR) with truth.json",
    )
    ph.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    ph.add_argument(
        "--variant", choices=["normal", "lumbarization", "sacralization"], default="normal"
    )
    ph.add_argument("--seed", type=int, default=0)
    ph.add_argument("--slices", type=int, default=15)
    ph.add_argument("--size", type=int, default=256, help="rows = columns (e.g. 256, 320, 512)")
    ph.add_argument(
        "--transfer-syntax",
        default="1.2.840.10008.1.2.1",
        help="transfer syntax UID (default Explicit VR Little Endian)",
    )
    ph.add_argument(
        "--multiframe",
        action="store_true",
        help="write one multi-frame Legacy Converted Enhanced MR Image, not one file per slice",
    )
    ph.set_defaults(func=run_phantom)

    model = subparsers.add_parser("model", help="train or evaluate the disc-level localizer")
    sub = model.add_subparsers(dest="model_command", required=True, metavar="ACTION")
    tr = sub.add_parser("train", help="train on normal phantoms, pick the threshold, save weights")
    target = tr.add_mutually_exclusive_group()
    target.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"weights file to write (default: ./{DEFAULT_TRAIN_OUT}, refused if it exists)",
    )
    target.add_argument(
        "--overwrite-reference",
        action="store_true",
        help="write the packaged reference weights (reference_localizer.pt) instead",
    )
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--phantoms", type=int, default=1000, help="normal training phantoms")
    tr.add_argument(
        "--phantoms-3d",
        type=int,
        default=600,
        help="normal training phantoms of the second (3-D spin-echo) generator",
    )
    tr.add_argument(
        "--phantoms-rigid",
        type=int,
        default=0,
        help="normal training phantoms of the third (rigid-body) generator",
    )
    tr.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes rendering the training phantoms (same result for any count)",
    )
    tr.add_argument("--steps", type=int, default=3500, help="optimizer steps (batch 16)")
    tr.add_argument(
        "--epochs",
        type=float,
        default=None,
        help="alternative to --steps: passes over the training samples",
    )
    tr.add_argument(
        "--validation",
        type=int,
        default=20,
        help="validation phantoms per LSTV variant (twice as many normals)",
    )
    tr.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads; the result is bit-identical only for the same count (default 1)",
    )
    tr.set_defaults(func=run_train)

    ca = sub.add_parser(
        "calibrate",
        help="site calibration on known-normal studies (--normals), or re-choose a weights "
        "file's own threshold on validation phantoms (WEIGHTS)",
        description="With --normals: run the screen on a site's known-normal studies and write "
        "a calibration file whose threshold gives the target specificity on them "
        "([model] calibration points to it). Without: re-choose the threshold stored in "
        "WEIGHTS on validation phantoms (Youden's J).",
    )
    ca.add_argument(
        "weights",
        type=Path,
        metavar="WEIGHTS",
        nargs="?",
        default=None,
        help="weights file (without --normals: required; with: default [model] weights)",
    )
    ca.add_argument(
        "--out",
        type=Path,
        default=None,
        help="with --normals: the calibration JSON to write (required); "
        "without: the weights file to write (default: overwrite WEIGHTS)",
    )
    ca.add_argument("--validation", type=int, default=20, help="phantoms per LSTV variant")
    ca.add_argument(
        "--workers",
        type=int,
        default=2,
        help="processes rendering the validation phantoms (same result for any count)",
    )
    ca.add_argument(
        "--normals",
        type=Path,
        nargs="+",
        metavar="DIR",
        default=None,
        help="folders searched recursively for DICOM files of known-normal studies (grouped by "
        "Study Instance UID, any number of series each)",
    )
    ca.add_argument(
        "--specificity",
        type=float,
        default=0.95,
        help="target specificity on the normals (default 0.95)",
    )
    ca.add_argument(
        "--min-normals",
        type=int,
        default=20,
        help="refuse fewer usable normal studies than this (default 20)",
    )
    ca.add_argument(
        "--force", action="store_true", help="calibrate even below --min-normals (stated in file)"
    )
    add_config_argument(ca)
    ca.set_defaults(func=run_calibrate)

    ev = sub.add_parser("evaluate", help="held-out evaluation (error mm, AUROC, sens/spec)")
    ev.add_argument("--weights", type=Path, default=None)
    ev.add_argument("--json", action="store_true")
    ev.add_argument("--normals", type=int, default=60)
    ev.add_argument("--lstv", type=int, default=30, help="phantoms per LSTV variant")
    ev.add_argument("--roc", type=Path, default=None, help="write a ROC plot PNG here")
    add_config_argument(ev)
    ev.set_defaults(func=run_evaluate)

    inf = subparsers.add_parser("infer", help="run the LSTV screen on a folder of DICOM files")
    inf.add_argument("study_dir", metavar="STUDY_DIR", type=Path)
    inf.add_argument("--json", action="store_true")
    # --- SR output: owned by the report engineer (scp_node.report.write_sr_for_result) ---
    inf.add_argument(
        "--sr",
        metavar="OUT.dcm",
        type=Path,
        default=None,
        help="also write the result as a DICOM SR",
    )
    add_config_argument(inf)
    inf.set_defaults(func=run_infer)


def run_phantom(args: argparse.Namespace) -> int:
    from scp_node.phantom_dicom import write_phantom

    paths = write_phantom(
        args.out_dir,
        args.variant,
        args.seed,
        args.slices,
        args.size,
        args.transfer_syntax,
        multiframe=args.multiframe,
    )
    if args.multiframe:
        print(
            f"wrote {args.slices} slices as frames of {paths[0].name} "
            f"({args.variant}, seed {args.seed}) to {args.out_dir}"
        )
    else:
        print(f"wrote {len(paths)} slices ({args.variant}, seed {args.seed}) to {args.out_dir}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from scp_node.model.train import TrainConfig, train
    from scp_node.model.weights import reference_path

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    steps = args.steps
    if args.epochs is not None:
        steps = math.ceil(
            args.epochs * (args.phantoms + args.phantoms_3d + args.phantoms_rigid) * 5 / 16
        )
        steps = max(1, steps)
    reference = reference_path()
    if args.overwrite_reference:
        out = reference
    elif args.out is not None and args.out.resolve() == reference.resolve():
        print(
            f"{args.out} is the packaged reference weights: use --overwrite-reference to replace it"
        )
        return 2
    elif args.out is not None:
        out = args.out
    else:
        out = Path(DEFAULT_TRAIN_OUT)
        if out.exists():
            print(f"{out} exists: name the file to write with --out FILE")
            return 2
    meta = train(
        TrainConfig(
            out=out,
            seed=args.seed,
            phantoms=args.phantoms,
            phantoms_3d=args.phantoms_3d,
            phantoms_rigid=args.phantoms_rigid,
            workers=args.workers,
            steps=steps,
            validation_per_variant=args.validation,
            threads=args.threads,
        )
    )
    print(f"wrote {out}: threshold {meta['lstv_threshold']}, {meta['training']['total_seconds']} s")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    if args.normals:
        return run_site_calibration(args)
    if args.weights is None:
        print("scp-node model calibrate: give WEIGHTS (phantom validation) or --normals DIR ...")
        return 2
    from scp_node.model.train import calibrate

    meta = calibrate(args.weights, args.out or args.weights, args.validation, args.workers)
    print(f"threshold {meta['lstv_threshold']} (validation AUROC {meta['validation']['auroc']})")
    return 0


def run_site_calibration(args: argparse.Namespace) -> int:
    """``model calibrate --normals DIR ... --out FILE``: the site's own threshold."""
    from scp_node.config import load_settings
    from scp_node.model.calibration import CalibrationError, calibrate_site, write_calibration
    from scp_node.model.engine import LocalizerEngine

    if args.out is None:
        print("scp-node model calibrate --normals: --out FILE (the calibration JSON) is required")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = load_settings(args.config)
    if args.weights is not None:
        settings.model.weights = args.weights
    # the scores do not depend on the threshold: calibrate with a placeholder, so that no recorded
    # threshold (or its Monte-Carlo settings, which the site may have changed) is in the way
    settings.model.calibration = None
    settings.model.lstv_threshold = 0.0
    engine = LocalizerEngine.from_settings(settings.model)
    try:
        data = calibrate_site(
            args.normals,
            settings,
            engine,
            specificity=args.specificity,
            minimum=args.min_normals,
            force=args.force,
        )
    except CalibrationError as exc:
        print(f"calibration refused: {exc}")
        return 1
    write_calibration(data, args.out)
    studies, scores = data["studies"], data["scores"]
    print(
        f"wrote {args.out}: threshold {data['threshold']:.4f} for specificity "
        f"{data['target_specificity']} on {studies['used']} normal studies "
        f"(achieved {data['achieved_specificity']:.3f}, 95% lower bound "
        f"{data['specificity_lower_95']:.3f})"
    )
    print(
        f"scores min {scores['min']:.4f} median {scores['quantiles']['0.5']:.4f} max "
        f"{scores['max']:.4f}; not applicable {studies['not_applicable']}, not assessable "
        f"{studies['not_assessable']}, files skipped {studies['files_skipped']}"
        + ("  [FORCED below the minimum count]" if data["forced"] else "")
    )
    point = data["operating_point"]
    print(
        f"at this threshold on these normals: {point['over_threshold']} at or over it, "
        f"{point['held_back']} of them held back by the evidence rule (no anatomical sign: "
        f"'No LSTV suspected', needs review), so {point['false_alarms']} false alarms "
        f"({point['false_alarm_rate']:.3f} of {studies['used']})"
    )
    terms = data["score_terms"]
    if terms:
        print(
            "score terms, median / 90th percentile: "
            + ", ".join(
                f"{name.replace('_', ' ')} {t['quantiles']['0.5']:.3f} / "
                f"{t['quantiles']['0.9']:.3f}"
                for name, t in terms.items()
            )
        )
    print(f'point the node at it: [model] calibration = "{args.out}"')
    return 0


def _engine(args: argparse.Namespace, weights: Path | None = None) -> Any:
    from scp_node.config import load_settings
    from scp_node.model.calibration import CalibrationError
    from scp_node.model.engine import LocalizerEngine

    settings = load_settings(getattr(args, "config", None))
    if weights is not None:
        settings.model.weights = weights
    try:
        return settings, LocalizerEngine.from_settings(settings.model)
    except CalibrationError as exc:
        raise SystemExit(f"scp-node: {exc}") from exc


def run_evaluate(args: argparse.Namespace) -> int:
    from scp_node.model.evaluate import evaluate, write_roc_png

    _settings, engine = _engine(args, args.weights)
    report = evaluate(engine, normals=args.normals, per_lstv_variant=args.lstv)
    if args.roc:
        write_roc_png(report, args.roc)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    err = report["error_mm"]
    print(f"weights sha256       {report['weights_sha256']}")
    print(f"phantoms             {report['counts']} ({report['phantoms']})")
    print(
        f"localization error   median {err['median']:.2f} mm, p95 {err['p95']:.2f} mm "
        f"(normals, in-plane)"
    )
    for level, value in err["per_level_median"].items():
        print(f"  {level:<8} median {value:.2f} mm")
    print(
        f"AUROC LSTV vs normal {report['auroc']:.3f} "
        f"(lumbarization {report['auroc_by_variant']['lumbarization']:.3f}, "
        f"sacralization {report['auroc_by_variant']['sacralization']:.3f})"
    )
    print(
        f"verdicts at threshold {report['threshold']:.4f}: sensitivity "
        f"{report['sensitivity']:.3f}, specificity {report['specificity']:.3f} "
        f"({report['held_back']} findings held back for want of an anatomical sign)"
    )
    print(f"not assessable       {report['not_assessable']:.3f} {report['not_assessable_reasons']}")
    print(f"median score by variant {report['score_median_by_variant']}")
    return 0


def run_infer(args: argparse.Namespace) -> int:
    from scp_node.analysis import analyze_study

    settings, engine = _engine(args)
    paths = sorted(
        p for p in Path(args.study_dir).rglob("*") if p.is_file() and p.name != "truth.json"
    )
    result = analyze_study(paths, settings, engine)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        _print_result(result)
    if args.sr is not None:
        _write_sr(result, paths, args.sr, settings)
    return 0 if result.applicable else 2


def _figure(value: float | None, width: int, decimals: int) -> str:
    """A right-aligned number, or "-" for a figure the result does not hold."""
    return "-".rjust(width) if value is None else f"{value:{width}.{decimals}f}"


def _print_result(result: Any) -> None:
    print(f"study {result.study_instance_uid}")
    if not result.applicable:
        print(f"NOT APPLICABLE: {result.reason}")
        return
    print(
        f"series {result.series_instance_uid}   device {result.device}   "
        f"{result.inference_ms:.0f} ms"
    )
    frames = sorted({f.frame_number for f in result.levels if f.frame_number is not None})
    if frames:
        print(f"multi-frame source: levels on frame {', '.join(map(str, frames))}")
    print(
        f"{'level':<7} {'col':>7} {'row':>7} {'peak':>6} {'H bits':>7} {'Hsp':>6} "
        f"{'Hpred':>7} {'MI':>7}"
    )
    for f in result.levels:
        print(
            f"{f.level:<7} {f.pixel_xy[0]:7.1f} {f.pixel_xy[1]:7.1f} {f.peak_confidence:6.3f} "
            f"{f.entropy:7.3f} {f.spatial_entropy:6.3f} {_figure(f.predictive_entropy, 7, 3)} "
            f"{_figure(f.mutual_information, 7, 4)}"
        )
    decision = "LSTV SUSPECTED" if result.lstv_suspected else "no LSTV suspected"
    if not result.assessable:
        decision = f"NOT ASSESSABLE: {result.not_assessable_reason}"
    elif result.held_back:
        decision += f" (finding held back: {result.held_back})"
    print(
        f"LSTV score {result.lstv_score:.4f} (threshold {result.lstv_threshold:.4f}): {decision}"
        + ("  [NEEDS REVIEW]" if result.needs_review else "")
    )
    if result.calibration:
        print(f"threshold from {result.calibration}")
    for said in result.evidence:
        print(f"evidence: {said}")
    for w in result.warnings:
        print(f"warning: {w}")
    print("research use only - not for clinical use")


def _write_sr(result: Any, paths: list[Path], out: Path, settings: Any) -> None:
    """Hand-off point for the report engineer: scp_node.report.write_sr_for_result."""
    try:
        from scp_node.report import write_sr_for_result  # type: ignore[attr-defined]
    except ImportError:
        print("SR writing not available", file=sys.stderr)
        return
    write_sr_for_result(result, paths, out, settings.report)
    print(f"wrote SR {out}", file=sys.stderr)  # stdout is the result alone (JSON with --json)
