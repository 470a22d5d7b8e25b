"""The analysis result: what the model found in one study, handed from `pipeline` to `report`.

Plain data only (no torch, no pydicom), so the report and the tests can build one by hand.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

DISC_LEVELS: tuple[str, ...] = ("L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1")


@dataclass(frozen=True)
class LevelFinding:
    """One disc level as the localizer placed it, with its uncertainty terms.

    ``pixel_xy`` is (column, row) on the slice ``sop_instance_uid``, in pixel units with (0, 0) at
    the centre of the top-left pixel, i.e. the DICOM SCOORD convention minus 0.5 (PS3.3
    C.18.6.1.2 uses the top-left corner of the image; the report adds the 0.5). ``patient_xyz``
    is in mm (patient coordinate system, PS3.3 C.7.6.2.1.1). Entropies are in bits.
    """

    level: str
    sop_instance_uid: str
    slice_index: int
    pixel_xy: tuple[float, float]
    patient_xyz: tuple[float, float, float]
    peak_confidence: float
    entropy: float
    spatial_entropy: float
    predictive_entropy: float | None = None
    mutual_information: float | None = None
    #: 1-based frame of a multi-frame source instance (Referenced Frame Number); None = single.
    frame_number: int | None = None


@dataclass(frozen=True)
class ModelIdentity:
    """Which algorithm and weights produced a result (the SR's algorithm identification)."""

    name: str
    version: str
    weights_sha256: str
    clinical_use: bool = False


@dataclass(frozen=True)
class StudyResult:
    """The outcome of the LSTV screen on one study.

    ``applicable`` is False when the study holds no usable sagittal T2 series; ``reason`` says why.
    ``assessable`` is False when the model ran but the screen cannot be trusted on this study
    (implausible localization, uncertain reference levels, too few slices, S1 not covered);
    ``not_assessable_reason`` says why, and ``lstv_suspected`` is then always False.
    ``calibration`` names the threshold's origin (weights default or a site calibration file).
    """

    study_instance_uid: str
    applicable: bool
    reason: str = ""
    series_instance_uid: str = ""
    levels: tuple[LevelFinding, ...] = ()
    lstv_score: float = 0.0
    lstv_threshold: float = 0.0
    lstv_suspected: bool = False
    needs_review: bool = False
    #: Disc signal of the auxiliary mobile-discs channel at L5-S1 and below it, relative to the
    #: study's upper discs (None for weights without that channel).
    junction_disc_signal: float | None = None
    below_disc_signal: float | None = None
    #: The L4-L5 -> L5-S1 distance over the median distance between the levels above (~1 in a
    #: normal spine; a short lowest segment is a sign of sacralization). None = not measured.
    junction_gap_ratio: float | None = None
    #: Which gap of the levels spans two segments: one of the chain L1-L2 .. L4-L5 (one
    #: lumbar-type segment more than a normal lumbar spine,
    #: :func:`scp_node.model.uncertainty.extra_segment`) or L4-L5 to L5-S1 (no mobile disc where
    #: L5-S1 should be, :func:`scp_node.model.uncertainty.junction_two_segments`); "" when none
    #: does. A score term.
    extra_segment: str = ""
    #: How the localizer's own points of L1-L2 .. L4-L5 were mended before the quality gate:
    #: ``second_peak`` (one level read on the second peak of its map,
    #: :func:`scp_node.model.uncertainty.repair_chain`), ``counted_up`` (counted up from L5-S1
    #: disc by disc, :func:`scp_node.model.uncertainty.count_up_chain`), or "" (not mended).
    levels_repaired: str = ""
    assessable: bool = True
    not_assessable_reason: str = ""
    #: Why a score at or over the threshold was not reported as "LSTV suspected": no anatomical
    #: sign behind the localizer's uncertainty (:func:`scp_node.model.uncertainty.uncorroborated`);
    #: the verdict is then "No LSTV suspected", needs review. "" otherwise.
    held_back: str = ""
    calibration: str = ""
    model: ModelIdentity | None = None
    device: str = ""
    inference_ms: float = 0.0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: The anatomical evidence behind "LSTV suspected", in words, each with what else gives the
    #: same sign (:func:`scp_node.model.uncertainty.finding_evidence`); () for any other verdict.
    evidence: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for ``scp-node infer --json`` and the job record)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StudyResult:
        """The inverse of :meth:`to_json` (tuples and nested dataclasses restored; keys it does
        not know, e.g. from a newer node, are ignored, and missing ones take their defaults)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["levels"] = tuple(
            LevelFinding(
                **{
                    **level,
                    "pixel_xy": tuple(level["pixel_xy"]),
                    "patient_xyz": tuple(level["patient_xyz"]),
                }
            )
            for level in data.get("levels") or ()
        )
        values["model"] = ModelIdentity(**data["model"]) if data.get("model") else None
        for name in ("warnings", "evidence"):
            values[name] = tuple(data.get(name) or ())
        return cls(**values)
