"""Site calibration: the LSTV threshold chosen on a site's own known-normal studies.

``scp-node model calibrate --normals DIR ...`` runs every study found under the folders through the
node's real analysis path (:func:`scp_node.analysis.analyze_study`), keeps the scores of the
applicable and assessable ones, and picks the threshold that gives the target specificity on them.
The result is a small JSON file (:data:`FORMAT`) that ``[model] calibration`` points to.

Threshold rule (decision is ``score >= threshold``): with the n normal scores sorted ascending
s(1) <= ... <= s(n) and k = ceil(specificity * n), the threshold is the midpoint of s(k) and s(k+1)
(so exactly k normals fall below it), or just above s(n) when k = n. On the calibration normals the
empirical specificity is then k/n >= the target. With few normals that estimate is loose: the file
also records the exact (Clopper-Pearson) 95 % lower bound of the specificity, and the command
refuses fewer than ``minimum`` (default 20) usable normals unless forced.

Precedence in the engine (:func:`resolve_threshold`): ``[model] lstv_threshold`` if set, else the
calibration file's threshold, else the weights' own ``lstv_threshold``. A calibration file made for
other weights (SHA-256 differs) is refused, and so is a calibration file's or the weights' threshold
under other Monte-Carlo settings than it was chosen with (:func:`check_ensemble`). The file holds
no UIDs or patient data: scores only.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scp_node.config import ModelSettings, Settings
    from scp_node.model.engine import LocalizerEngine
    from scp_node.model.uncertainty import DiscEvidence
    from scp_node.result import StudyResult

log = logging.getLogger(__name__)

FORMAT = "scp-node-calibration"
FORMAT_VERSION = 1
DEFAULT_SPECIFICITY = 0.95
DEFAULT_MINIMUM = 20
QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99)
WEIGHTS_DEFAULT_LABEL = "weights default threshold"
RULE = (
    "decision score >= threshold; k = ceil(target_specificity * n) normals must score below it: "
    "threshold = midpoint of the k-th and (k+1)-th smallest normal scores, or just above the "
    "largest when k = n"
)


class CalibrationError(ValueError):
    """The calibration cannot be made or used (too few normals, wrong weights, bad file)."""


@dataclass(frozen=True)
class Calibration:
    """A loaded calibration file."""

    path: Path
    sha256: str
    threshold: float
    target_specificity: float
    weights_sha256: str
    created: str
    count: int
    data: dict[str, Any]

    @property
    def label(self) -> str:
        """What the SR and ``scp-node infer --json`` record as the threshold's origin."""
        return f"site calibration {self.path.name} sha256 {self.sha256} {self.created}"


def load_calibration(path: Path | str) -> Calibration:
    """Read and check a calibration file (format, threshold, weights SHA-256)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except FileNotFoundError as exc:
        raise CalibrationError(f"calibration file not found: {path}") from exc
    except (OSError, ValueError) as exc:
        raise CalibrationError(f"calibration file {path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CalibrationError(f"{path} is not an {FORMAT} file")
    if data.get("format_version") != FORMAT_VERSION:
        raise CalibrationError(
            f"{path}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}"
        )
    try:
        threshold = float(data["threshold"])
        weights_sha = str(data["model"]["weights_sha256"])
        created = str(data["created"])
        count = int(data["scores"]["count"])
        target = float(data["target_specificity"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CalibrationError(f"{path}: missing or invalid field ({exc})") from exc
    if not math.isfinite(threshold):
        raise CalibrationError(f"{path}: threshold {threshold} is not finite")
    return Calibration(
        path=path,
        sha256=hashlib.sha256(raw).hexdigest(),
        threshold=threshold,
        target_specificity=target,
        weights_sha256=weights_sha,
        created=created,
        count=count,
        data=data,
    )


def check_weights(calibration: Calibration, weights_sha256: str) -> None:
    """Refuse a calibration made for other weights (its scores mean nothing for these)."""
    if calibration.weights_sha256 != weights_sha256:
        raise CalibrationError(
            f"calibration file {calibration.path} was made for weights sha256 "
            f"{calibration.weights_sha256}, but the loaded weights are {weights_sha256}: "
            "run `scp-node model calibrate --normals ...` again for these weights, or clear "
            "[model] calibration"
        )


#: The inference settings a threshold belongs to: the dropout passes and context slices make the
#: ensemble of subnetworks whose scores it was chosen on, and other settings give other scores (the
#: 95 % specificity threshold of other dropout masks lay anywhere in 0.04-0.87; docs/model.md, "The
#: Monte-Carlo seed").
ENSEMBLE_SETTINGS = ("mc_samples", "context_slices")
#: The settings the training command chooses the weights' own threshold with.
TRAINING_ENSEMBLE: dict[str, int] = {"mc_samples": 8, "context_slices": 3}


def ensemble_of(holder: object) -> dict[str, int]:
    """The :data:`ENSEMBLE_SETTINGS` of ``[model]`` settings or of an engine."""
    return {key: int(getattr(holder, key)) for key in ENSEMBLE_SETTINGS}


def check_ensemble(
    weights_metadata: Mapping[str, Any], calibration: Calibration | None, used: Mapping[str, int]
) -> None:
    """Refuse the threshold in use (the calibration's, else the weights' own) when it was chosen
    with other :data:`ENSEMBLE_SETTINGS` than ``used``; nothing recorded, nothing to check."""
    recorded, source = _threshold_ensemble(weights_metadata, calibration)
    differ = [
        f"{key} {recorded[key]} (now {used[key]})"
        for key in ENSEMBLE_SETTINGS
        if recorded and key in recorded and key in used and int(recorded[key]) != int(used[key])
    ]
    if differ:
        raise CalibrationError(
            f"the threshold of {source} was chosen with {', '.join(differ)} in [model]: other "
            "Monte-Carlo settings give other scores. Restore them, run `scp-node model calibrate "
            "--normals ...` with these settings, or set [model] lstv_threshold"
        )


def _threshold_ensemble(
    weights_metadata: Mapping[str, Any], calibration: Calibration | None
) -> tuple[Mapping[str, Any] | None, str]:
    """The settings the threshold in use was chosen with, and where it comes from: the
    calibration file's record, else the training command's (:data:`TRAINING_ENSEMBLE`) for the
    weights' own threshold."""
    if calibration is not None:
        return calibration.data.get("engine"), f"calibration file {calibration.path}"
    recorded = weights_metadata.get("threshold_engine", TRAINING_ENSEMBLE)
    return recorded, "the weights (their lstv_threshold)"


def resolve_threshold(
    weights_threshold: float | None,
    configured: float | None,
    calibration: Calibration | None,
    weights_sha256: str,
) -> tuple[float, str]:
    """(threshold, label): ``configured`` > ``calibration`` > the weights' own value."""
    if calibration is not None:
        check_weights(calibration, weights_sha256)
    if configured is not None:
        label = f"configured threshold ([model] lstv_threshold = {float(configured)})"
        if calibration is not None:
            log.warning(
                "[model] lstv_threshold %s overrides the threshold %s of %s",
                configured,
                calibration.threshold,
                calibration.path,
            )
            label += f", overriding site calibration {calibration.path.name}"
        return float(configured), label
    if calibration is not None:
        return calibration.threshold, calibration.label
    if weights_threshold is None:
        raise ValueError("weights carry no lstv_threshold and none is configured")
    return float(weights_threshold), WEIGHTS_DEFAULT_LABEL


def preflight(model_settings: ModelSettings) -> Calibration | None:
    """Check the threshold source before the node starts (the engine checks again when it
    loads): ``[model] calibration`` against the configured weights file, and the Monte-Carlo
    settings against those the threshold in use was chosen with; the calibration, or None when
    none is configured."""
    from scp_node.model.weights import WeightsError, load, reference_path, sha256_file

    weights = Path(model_settings.weights or reference_path())
    calibration = None
    if model_settings.calibration is not None:
        calibration = load_calibration(model_settings.calibration)
        check_weights(calibration, sha256_file(weights))
    if model_settings.lstv_threshold is None:
        try:
            metadata = {} if calibration is not None else load(weights).metadata
        except WeightsError:  # the model worker says so when it loads them
            return calibration
        check_ensemble(metadata, calibration, ensemble_of(model_settings))
    return calibration


# --- the threshold rule ---------------------------------------------------------------------------
def choose_threshold(scores: Sequence[float], specificity: float) -> float:
    """The threshold that gives at least ``specificity`` on ``scores`` (module docstring rule)."""
    if not scores:
        raise CalibrationError("no scores to calibrate on")
    if not 0.0 < specificity < 1.0:
        raise CalibrationError(f"target specificity must be in (0, 1), not {specificity}")
    ordered = sorted(float(s) for s in scores)
    n = len(ordered)
    k = min(n, max(1, math.ceil(specificity * n - 1e-9)))
    if k == n:
        return math.nextafter(ordered[-1], math.inf)
    low, high = ordered[k - 1], ordered[k]
    if high == low:  # ties: every normal at this score must stay below the threshold
        return math.nextafter(low, math.inf)
    return (low + high) / 2.0


def specificity_lower_bound(below: int, n: int, confidence: float = 0.95) -> float:
    """Lower end of the exact two-sided Clopper-Pearson interval of the proportion below/n."""
    if n <= 0 or below <= 0:
        return 0.0
    alpha = (1.0 - confidence) / 2.0

    def upper_tail(p: float) -> float:  # P(X >= below | n, p)
        return sum(
            math.exp(
                math.lgamma(n + 1)
                - math.lgamma(i + 1)
                - math.lgamma(n - i + 1)
                + (i * math.log(p) if i else 0.0)
                + ((n - i) * math.log1p(-p) if n - i else 0.0)
            )
            for i in range(below, n + 1)
        )

    lo, hi = 0.0, 1.0
    for _ in range(60):  # upper_tail grows with p: find p where it equals alpha
        mid = (lo + hi) / 2.0
        if upper_tail(mid) < alpha:
            lo = mid
        else:
            hi = mid
    return lo


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile of sorted values (numpy's default 'linear')."""
    pos = q * (len(ordered) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def describe_scores(scores: Sequence[float]) -> dict[str, Any]:
    """count, min, max, mean, quantiles and the sorted scores themselves."""
    ordered = sorted(float(s) for s in scores)
    return {
        "count": len(ordered),
        "min": ordered[0] if ordered else None,
        "max": ordered[-1] if ordered else None,
        "mean": sum(ordered) / len(ordered) if ordered else None,
        "quantiles": {f"{q:g}": _quantile(ordered, q) for q in QUANTILES} if ordered else {},
        "values": ordered,
    }


#: The terms the LSTV score adds up (:func:`.uncertainty.lstv_score`), recorded per calibration.
SCORE_TERMS = ("uncertainty_excess", "extra_segment", "disc_missing", "disc_below")


def score_terms(result: StudyResult) -> dict[str, float | None]:
    """The terms of one result's score, from the figures the result reports: the uncertainty
    excess (junction levels' ``4 MI + 1 - peak confidence`` minus the reference levels'), or,
    when the chain of levels holds an extra segment, that term instead (the excess is then None:
    not part of the score); and, for weights with the mobile-discs channel, the disc signal
    missing at L5-S1 and the disc signal below it (None without that channel). The sum of those
    that are not None is the score to rounding."""
    from scp_node.model import uncertainty as unc

    if result.extra_segment:
        first: dict[str, float | None] = {
            "uncertainty_excess": None,
            "extra_segment": unc.EXTRA_SEGMENT_TERM,
        }
    else:
        excess = unc.uncertainty_excess({f.level: f for f in result.levels})
        first = {"uncertainty_excess": excess, "extra_segment": 0.0}
    evidence = _disc_evidence(result)
    if evidence is None:
        return {**first, "disc_missing": None, "disc_below": None}
    return {**first, "disc_missing": evidence.missing, "disc_below": evidence.extra}


def _disc_evidence(result: StudyResult) -> DiscEvidence | None:
    """The mobile-discs channel's evidence as the result reports it (None without that channel)."""
    from scp_node.model.uncertainty import DiscEvidence

    if result.junction_disc_signal is None or result.below_disc_signal is None:
        return None
    return DiscEvidence(junction=result.junction_disc_signal, below=result.below_disc_signal)


def held_back_at(result: StudyResult, threshold: float) -> bool:
    """Whether the running node would hold back this result's finding at ``threshold``: a score
    at or over it with no anatomical sign behind it (:func:`.uncertainty.uncorroborated`), the
    answer then "No LSTV suspected", needs review. From the figures the result reports (to their
    rounding), like :func:`score_terms`."""
    from scp_node.model import uncertainty as unc

    evidence = _disc_evidence(result)
    if result.lstv_score < threshold or evidence is None:
        return False
    gap = result.junction_gap_ratio
    shortening = unc.junction_shortening(gap) if gap is not None else 0.0
    return bool(unc.uncorroborated(evidence, shortening, extra_segment=bool(result.extra_segment)))


def operating_point(results: Sequence[StudyResult], threshold: float) -> dict[str, Any]:
    """What the node would answer on these normals at ``threshold``: how many score at or over
    it, how many of those it would hold back (no anatomical sign), and so the false alarms it
    would raise, as a count and a rate. The threshold is chosen on the scores alone; the
    evidence rule only ever turns a score over it into a negative for review."""
    over = [r for r in results if r.lstv_score >= threshold]
    held = sum(held_back_at(r, threshold) for r in over)
    return {
        "over_threshold": len(over),
        "held_back": held,
        "false_alarms": len(over) - held,
        "false_alarm_rate": (len(over) - held) / len(results) if results else None,
    }


def describe_terms(rows: Sequence[Mapping[str, float | None]]) -> dict[str, Any]:
    """Per score term: count, min, max, mean and quantiles over the studies that have it."""
    out: dict[str, Any] = {}
    for term in SCORE_TERMS:
        values = [float(v) for row in rows if (v := row.get(term)) is not None]
        if values:
            described = describe_scores(values)
            described.pop("values")
            out[term] = described
    return out


# --- studies on disk ------------------------------------------------------------------------------
def find_studies(dirs: Iterable[Path]) -> tuple[dict[str, list[Path]], int]:
    """DICOM files under ``dirs`` (recursively) grouped by Study Instance UID, and the number of
    files skipped (not DICOM, unreadable, or without a Study Instance UID)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    studies: dict[str, list[Path]] = {}
    skipped = 0
    for root in dirs:
        root = Path(root)
        if not root.is_dir():
            raise CalibrationError(f"not a directory: {root}")
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            try:
                ds = pydicom.dcmread(
                    path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"]
                )
                uid = str(ds.get("StudyInstanceUID", "") or "")
            except (InvalidDicomError, OSError, ValueError, EOFError, TypeError):
                uid = ""
            if not uid:
                skipped += 1
                continue
            studies.setdefault(uid, []).append(path)
    return studies, skipped


def _screen_without_evidence_rule(
    paths: list[Path], settings: Settings, engine: LocalizerEngine
) -> StudyResult:
    """The screen of one study with the quality gate only: the evidence rule
    (:func:`.uncertainty.uncorroborated`) depends on the threshold being chosen, so it would
    drop exactly the high-scoring normals the threshold must stay above."""
    from scp_node.analysis import analyze_study

    before, engine.require_evidence = engine.require_evidence, False
    try:
        return analyze_study(paths, settings, engine)
    finally:
        engine.require_evidence = before


def calibrate_site(
    dirs: Sequence[Path],
    settings: Settings,
    engine: LocalizerEngine,
    specificity: float = DEFAULT_SPECIFICITY,
    minimum: int = DEFAULT_MINIMUM,
    force: bool = False,
) -> dict[str, Any]:
    """Run the screen on every study under ``dirs`` and return the calibration file's content."""
    from scp_node import __version__

    if not 0.0 < specificity < 1.0:
        raise CalibrationError(f"target specificity must be in (0, 1), not {specificity}")
    studies, skipped = find_studies(dirs)
    scores: list[float] = []
    terms: list[dict[str, float | None]] = []
    used: list[StudyResult] = []
    not_applicable = not_assessable = 0
    for i, (_uid, paths) in enumerate(sorted(studies.items()), start=1):
        result = _screen_without_evidence_rule(paths, settings, engine)
        if not result.applicable:
            not_applicable += 1
            log.info("normal %d/%d: not applicable: %s", i, len(studies), result.reason)
        elif not result.assessable:
            not_assessable += 1
            log.info(
                "normal %d/%d: not assessable: %s", i, len(studies), result.not_assessable_reason
            )
        else:
            scores.append(float(result.lstv_score))
            terms.append(score_terms(result))
            used.append(result)
            log.info("normal %d/%d: score %.4f", i, len(studies), result.lstv_score)
    n = len(scores)
    if n == 0:
        raise CalibrationError(
            f"no usable normal study: {len(studies)} studies found, {not_applicable} not "
            f"applicable, {not_assessable} not assessable, {skipped} files skipped"
        )
    if n < minimum and not force:
        raise CalibrationError(
            f"only {n} usable normal studies (minimum {minimum}): a threshold for specificity "
            f"{specificity} from so few is not trustworthy; add normals, or pass --force"
        )
    threshold = choose_threshold(scores, specificity)
    below = sum(s < threshold for s in scores)
    identity = engine.identity
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "threshold": threshold,
        "target_specificity": specificity,
        "rule": RULE,
        "achieved_specificity": below / n,
        "specificity_lower_95": round(specificity_lower_bound(below, n), 6),
        "minimum": minimum,
        "forced": bool(force and n < minimum),
        "scores": describe_scores(scores),
        "score_terms": describe_terms(terms),
        "operating_point": operating_point(used, threshold),
        "studies": {
            "found": len(studies),
            "used": n,
            "not_applicable": not_applicable,
            "not_assessable": not_assessable,
            "files_skipped": skipped,
        },
        "model": {
            "name": identity.name,
            "version": identity.version,
            "weights_sha256": identity.weights_sha256,
            "weights_default_threshold": engine.weights.metadata.get("lstv_threshold"),
        },
        "engine": {
            "mc_samples": engine.mc_samples,
            "context_slices": engine.context_slices,
        },
        "created": datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z"),
        "node_version": __version__,
    }


def write_calibration(data: dict[str, Any], out: Path) -> Path:
    """Write the calibration JSON (temp file → rename)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(out)
    return out
