"""Evaluation bench: the node's real LSTV screen on DICOM studies with known truth.

Every study folder under the given roots that holds a ``truth.json`` (as written by
``bench/indep_phantom.py``) is run through the node's own path, ``scp_node.analysis.analyze_study``
with ``Settings()`` defaults and ``LocalizerEngine.from_settings`` (the shipped weights and
threshold unless ``--weights`` is given), on CPU, one study at a time with a timeout. A study that
fails or times out is counted, never fatal.

Reported per variation set and over all studies: n, right series chosen (Series Instance UID of the
sagittal T2), not-applicable and not-assessable rates, AUROC of ``lstv_score`` over assessable
studies (average ranks for ties), sensitivity / specificity of ``lstv_suspected`` at the shipped
threshold, median / p95 disc error (mm, in the sagittal plane: the component along the slice normal
is removed; normals: all five levels, LSTV studies: L1-L2..L3-L4), median inference ms.

    python bench/bench_screen.py /tmp/indep/standard /tmp/indep/site [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

REFERENCE_LEVELS = ("L1-L2", "L2-L3", "L3-L4")
ALL_LEVELS = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


class StudyTimeout(BaseException):  # noqa: N818 - BaseException: not swallowed by `except Exception`
    """Raised by the alarm when one study takes longer than the timeout."""


@dataclass
class StudyRecord:
    """The outcome of one study, flattened for the summary and the JSON."""

    folder: str
    set: str
    variant: str
    lstv: bool
    ok: bool = True  # False = crashed or timed out
    error: str = ""
    applicable: bool = False
    reason: str = ""
    series_ok: bool | None = None
    assessable: bool = False
    not_assessable_reason: str = ""
    score: float | None = None
    threshold: float | None = None
    suspected: bool = False
    implausible: bool = False
    held_back: str = ""  # a score over the threshold answered "No LSTV suspected" (no sign)
    junction_disc_signal: float | None = None
    below_disc_signal: float | None = None
    junction_gap_ratio: float | None = None
    extra_segment: str = ""
    inference_ms: float | None = None
    wall_ms: float = 0.0
    disc_errors_mm: dict[str, float] = field(default_factory=dict)
    #: per level: peak confidence, mutual information (bits), entropy (bits)
    level_figures: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """right / false_alarm / miss / not_assessable (not_applicable, failed)."""
        if not self.ok:
            return "failed"
        if not self.applicable:
            return "not_applicable"
        if not self.assessable:
            return "not_assessable"
        if self.suspected == self.lstv:
            return "right"
        return "false_alarm" if self.suspected else "miss"


# ------------------------------------------------------------------------------------------------
# Metrics (numpy only)
# ------------------------------------------------------------------------------------------------
def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    sorted_vals = values[order]
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_vals[end + 1] == sorted_vals[start]:
            end += 1
        ranks[order[start : end + 1]] = 0.5 * (start + end) + 1.0
        start = end + 1
    return ranks


def auroc(scores: list[float], positive: list[bool]) -> float | None:
    """Area under the ROC curve by the rank-sum (Mann-Whitney U) formula; None if one class is
    missing."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(positive, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = average_ranks(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def sagittal_error(pred: np.ndarray, truth: np.ndarray, normal: np.ndarray) -> float:
    """Distance between two patient points (mm) after removing the slice-normal component."""
    n = normal / np.linalg.norm(normal)
    diff = pred - truth
    return float(np.linalg.norm(diff - (diff @ n) * n))


def _rate(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


#: The verdict counts every figure of docs/model.md quotes (right / false alarm / miss / NA).
VERDICTS = ("right", "false_alarm", "miss", "not_assessable")


def summarize(records: list[StudyRecord]) -> dict[str, Any]:
    """The summary metrics of a group of studies."""
    done = [r for r in records if r.ok]
    applicable = [r for r in done if r.applicable]
    assessable = [r for r in applicable if r.assessable]
    pos = [r for r in assessable if r.lstv]
    neg = [r for r in assessable if not r.lstv]
    errors = [e for r in applicable for e in r.disc_errors_mm.values()]
    ms = [r.inference_ms for r in applicable if r.inference_ms is not None]

    def median_score(variant: str) -> float | None:
        vals = [r.score for r in applicable if r.variant == variant and r.score is not None]
        return float(np.median(vals)) if vals else None

    return {
        "n": len(records),
        "failed": len(records) - len(done),
        "series_ok": sum(1 for r in done if r.series_ok),
        "not_applicable_rate": _rate([not r.applicable for r in done]),
        "not_assessable_rate": _rate([not r.assessable for r in applicable]),
        "implausible_rate": _rate([r.implausible for r in applicable]),
        "auroc": auroc([r.score or 0.0 for r in assessable], [r.lstv for r in assessable]),
        "auroc_by_variant": {
            v: auroc(
                [r.score or 0.0 for r in assessable if r.variant in (v, "normal")],
                [r.lstv for r in assessable if r.variant in (v, "normal")],
            )
            for v in ("lumbarization", "sacralization")
        },
        "sensitivity": _rate([r.suspected for r in pos]),
        "specificity": _rate([not r.suspected for r in neg]),
        "disc_error_median_mm": float(np.median(errors)) if errors else None,
        "disc_error_p95_mm": float(np.percentile(errors, 95)) if errors else None,
        "inference_ms_median": float(np.median(ms)) if ms else None,
        "score_median": {v: median_score(v) for v in ("normal", "lumbarization", "sacralization")},
        "verdicts": {k: sum(1 for r in records if r.verdict == k) for k in VERDICTS},
        "held_back": sum(1 for r in assessable if r.held_back),
    }


# ------------------------------------------------------------------------------------------------
# Running one study
# ------------------------------------------------------------------------------------------------
def find_studies(roots: list[Path]) -> list[Path]:
    """Study folders (those holding truth.json) under the roots, sorted."""
    found: set[Path] = set()
    for root in roots:
        found.update(p.parent for p in root.rglob("truth.json"))
    return sorted(found)


def dicom_files(folder: Path) -> list[Path]:
    """All files of a study folder except the truth and previews."""
    skip = {".json", ".png", ".txt"}
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() not in skip)


def series_normal(paths: list[Path], series_uid: str) -> np.ndarray | None:
    """Slice normal (row x column cosines, PS3.3 C.7.6.2.1.1) of a series, from one header."""
    from pydicom import dcmread

    for path in paths:
        try:
            ds = dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001, S112 - any unreadable file is skipped
            continue
        if str(ds.get("SeriesInstanceUID", "")) == series_uid and "ImageOrientationPatient" in ds:
            iop = np.array([float(v) for v in ds.ImageOrientationPatient])
            return np.cross(iop[:3], iop[3:])
    return None


def disc_errors(
    result: Any, truth: dict, normal: np.ndarray, levels: tuple[str, ...]
) -> dict[str, float]:
    """Sagittal-plane error per level present in both the result and the truth.

    Truth discs carry ``patient_xyz`` (this bench's generator) or ``patient_mm`` (the project's
    own phantom writer), both patient coordinates in mm (PS3.3 C.7.6.2.1.1)."""
    true_xyz = {
        d["level"]: np.asarray(d.get("patient_xyz", d.get("patient_mm")), float)
        for d in truth.get("discs", [])
        if d.get("patient_xyz", d.get("patient_mm")) is not None
    }
    out = {}
    for finding in result.levels:
        if finding.level in levels and finding.level in true_xyz:
            pred = np.asarray(finding.patient_xyz, float)
            out[finding.level] = round(sagittal_error(pred, true_xyz[finding.level], normal), 3)
    return out


def _on_alarm(signum: int, frame: object) -> None:
    raise StudyTimeout()


def run_study(folder: Path, settings: Any, engine: Any, timeout_s: int) -> StudyRecord:
    """Screen one study through the node's own analysis path; never raises."""
    from scp_node.analysis import analyze_study

    truth = json.loads((folder / "truth.json").read_text())
    rec = StudyRecord(
        folder=str(folder),
        set=str(truth.get("variation", truth.get("set", folder.parent.name))),
        variant=str(truth.get("variant", "normal")),
        lstv=bool(truth.get("lstv", truth.get("variant", "normal") != "normal")),
    )
    started = time.perf_counter()
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(max(1, timeout_s))
    try:
        paths = dicom_files(folder)
        result = analyze_study(paths, settings, engine)
        _fill(rec, result, truth, paths)
    except StudyTimeout:
        rec.ok, rec.error = False, f"timeout after {timeout_s} s"
    except Exception as exc:  # noqa: BLE001 - one bad study is counted, not fatal
        rec.ok, rec.error = False, f"{type(exc).__name__}: {exc}"[:300]
    finally:
        signal.alarm(0)
    rec.wall_ms = round((time.perf_counter() - started) * 1000.0, 1)
    return rec


def _fill(rec: StudyRecord, result: Any, truth: dict, paths: list[Path]) -> None:
    rec.applicable = bool(result.applicable)
    rec.reason = result.reason
    want = truth.get("t2_series_instance_uid", truth.get("series_instance_uid"))
    rec.series_ok = (result.series_instance_uid == want) if want else None
    if not result.applicable:
        return
    rec.assessable = bool(getattr(result, "assessable", True))
    rec.not_assessable_reason = str(getattr(result, "not_assessable_reason", ""))
    rec.score = float(result.lstv_score)
    rec.threshold = float(result.lstv_threshold)
    rec.suspected = bool(result.lstv_suspected)
    rec.implausible = any("implausible" in w for w in result.warnings)
    rec.held_back = str(getattr(result, "held_back", ""))
    rec.junction_disc_signal = result.junction_disc_signal
    rec.below_disc_signal = result.below_disc_signal
    rec.junction_gap_ratio = result.junction_gap_ratio
    rec.extra_segment = result.extra_segment
    rec.inference_ms = float(result.inference_ms)
    rec.level_figures = {
        lv.level: {"peak": lv.peak_confidence, "mi": lv.mutual_information, "entropy": lv.entropy}
        for lv in result.levels
    }
    normal = series_normal(paths, result.series_instance_uid)
    if normal is None:
        normal = np.asarray(truth.get("slice_normal", (1.0, 0.0, 0.0)), float)
    levels = REFERENCE_LEVELS if rec.lstv else ALL_LEVELS
    rec.disc_errors_mm = disc_errors(result, truth, normal, levels)


# ------------------------------------------------------------------------------------------------
# Report
# ------------------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 2, pct: bool = False) -> str:
    if value is None:
        return "-"
    if pct:
        return f"{100.0 * value:.0f} %"
    return f"{value:.{digits}f}"


def markdown(summaries: dict[str, dict[str, Any]]) -> str:
    """The summary table (one row per set, then all)."""
    head = (
        "| set | n | series ok | not applicable | not assessable | implausible "
        "| AUROC (Lumb / Sacr) | sens / spec | disc err median / p95 (mm) | median ms "
        "| median score N / Lumb / Sacr "
        "| right / FA / miss / NA | held back | failed |"
    )
    lines = [head, "|" + "---|" * 14]
    for name, s in summaries.items():
        med = s["score_median"]
        by_variant = " / ".join(
            _fmt(s["auroc_by_variant"][v]) for v in ("lumbarization", "sacralization")
        )
        scores = " / ".join(_fmt(med[v]) for v in ("normal", "lumbarization", "sacralization"))
        lines.append(
            f"| {name} | {s['n']} | {s['series_ok']}/{s['n']} "
            f"| {_fmt(s['not_applicable_rate'], pct=True)} "
            f"| {_fmt(s['not_assessable_rate'], pct=True)} "
            f"| {_fmt(s['implausible_rate'], pct=True)} | {_fmt(s['auroc'])} ({by_variant}) "
            f"| {_fmt(s['sensitivity'])} / {_fmt(s['specificity'])} "
            f"| {_fmt(s['disc_error_median_mm'], 1)} / {_fmt(s['disc_error_p95_mm'], 1)} "
            f"| {_fmt(s['inference_ms_median'], 0)} | {scores} "
            f"| {' / '.join(str(s['verdicts'][k]) for k in VERDICTS)} | {s['held_back']} "
            f"| {s['failed']} |"
        )
    return "\n".join(lines)


def build_engine(weights: Path | None, threads: int) -> tuple[Any, Any]:
    """Settings() defaults and the engine built the way the node builds it, forced to CPU."""
    from scp_node.config import Settings
    from scp_node.model.engine import LocalizerEngine

    settings = Settings()
    settings.model.device = "cpu"
    settings.model.cpu_threads = threads
    if weights is not None:
        settings.model.weights = weights
    return settings, LocalizerEngine.from_settings(settings.model)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("roots", nargs="+", type=Path, help="folders holding study folders")
    parser.add_argument("--json", type=Path, help="write summaries and per-study records here")
    parser.add_argument("--weights", type=Path, help="weights file (default: the shipped ones)")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per study")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    settings, engine = build_engine(args.weights, args.threads)
    studies = find_studies(args.roots)
    records: list[StudyRecord] = []
    for folder in studies:
        rec = run_study(folder, settings, engine, args.timeout)
        records.append(rec)
        if not args.quiet:
            print(_line(rec), file=sys.stderr, flush=True)
    sets = sorted({r.set for r in records})
    summaries = {name: summarize([r for r in records if r.set == name]) for name in sets}
    summaries["all"] = summarize(records)
    print(markdown(summaries))
    if args.json:
        payload = {
            "weights_sha256": engine.identity.weights_sha256,
            "threshold": engine.threshold,
            "summaries": summaries,
            "studies": [r.__dict__ for r in records],
        }
        args.json.write_text(json.dumps(payload, indent=1))
    return 0


def _line(rec: StudyRecord) -> str:
    if not rec.ok:
        return f"{Path(rec.folder).name:<18} FAILED {rec.error}"
    if not rec.applicable:
        return f"{Path(rec.folder).name:<18} {rec.variant:<14} not applicable: {rec.reason[:80]}"
    errs = " ".join(f"{k}:{v:.1f}" for k, v in rec.disc_errors_mm.items())
    flag = "SUSPECTED" if rec.suspected else "-"
    return (
        f"{Path(rec.folder).name:<18} {rec.variant:<14} score {rec.score:.3f} {flag:<9} "
        f"series {'ok' if rec.series_ok else 'WRONG'} "
        f"{'implausible ' if rec.implausible else ''}err {errs}"
    )


if __name__ == "__main__":
    sys.exit(main())
