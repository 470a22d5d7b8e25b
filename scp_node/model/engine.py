"""The inference engine: weights loaded once, MC-dropout sampling batched, one StudyResult per
series.

Slices are put onto the canonical grid from their DICOM geometry (:mod:`.geometry`), and
decoded, only as they are needed. A deterministic pass over the slices near the stack's centre
finds the mid-sagittal slice (where the reference levels are sharpest; :mod:`.midline` when the
stack is not centred on the spine); that slice and its neighbours (``context_slices``, about
4 mm apart) are then each run ``mc_samples`` times with dropout on, all (slice, pass) pairs
batched. Per level, the K*T probability maps are the samples for the mean map (coordinates,
peak confidence, entropies) and for the MC terms (predictive entropy, MI). Points are mapped
back to source pixels of the mid-sagittal slice. A quality gate
(:func:`.uncertainty.not_assessable_reason`) decides whether the screen is assessable at all.
The dropout masks are drawn on the CPU from a fixed seed for every (slice, pass) at once, so the
same input meets the same subnetworks on any device and batch size; on CUDA, bf16 autocast is
used when ``amp`` is on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import torch

from scp_node.config import ModelSettings
from scp_node.model import midline
from scp_node.model import uncertainty as unc
from scp_node.model.calibration import (
    Calibration,
    check_ensemble,
    ensemble_of,
    load_calibration,
    resolve_threshold,
)
from scp_node.model.geometry import CanonicalGrid, SliceFrame, slice_frames, to_canonical
from scp_node.model.network import enable_mc_dropout, set_dropout, spatial_softmax
from scp_node.model.weights import LoadedWeights, load
from scp_node.result import DISC_LEVELS, LevelFinding, ModelIdentity, StudyResult
from scp_node.series import SeriesVolume

log = logging.getLogger(__name__)

#: Distance between the context slices (mm): the middle of the training series' slice spacings.
CONTEXT_SPACING_MM = 4.0


def resolve_device(name: str) -> torch.device:
    """``auto`` = CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class LocalizerEngine:
    """Loaded weights on a device, ready to analyse sagittal series."""

    def __init__(
        self,
        weights: LoadedWeights,
        device: str = "auto",
        mc_samples: int = 8,
        cpu_threads: int = 0,
        max_batch: int = 64,
        lstv_threshold: float | None = None,
        review_margin: float = 0.1,
        context_slices: int = 3,
        amp: bool = True,
        seed: int = 0,
        calibration: Calibration | None = None,
    ) -> None:
        self.weights = weights
        self.device = resolve_device(device)
        if cpu_threads > 0:
            torch.set_num_threads(cpu_threads)
        self.mc_samples = max(1, int(mc_samples))
        self.max_batch = max(1, int(max_batch))
        self.context_slices = max(1, int(context_slices))
        self.amp = amp and self.device.type == "cuda"
        self.seed = seed
        #: seconds of the last :meth:`analyze`: decoding, canonicalising, the rest (network, maths)
        self.timings: dict[str, float] = {}
        self._prepared: CanonicalSlices | None = None
        # precedence: configured > site calibration > weights (docs/model.md, "Site calibration")
        self.threshold, self.calibration_label = resolve_threshold(
            weights.metadata.get("lstv_threshold"), lstv_threshold, calibration, weights.sha256
        )
        if lstv_threshold is None:  # a recorded threshold: only for the settings it was chosen with
            check_ensemble(weights.metadata, calibration, ensemble_of(self))
        self.review_margin = review_margin
        canonical = weights.metadata.get("canonical") or {}
        self.grid = CanonicalGrid(
            size=int(canonical.get("size", weights.config.input_size)),
            spacing_mm=float(canonical.get("spacing_mm", 320.0 / weights.config.input_size)),
        )
        self.quality = unc.QualityLimits.from_metadata(weights.metadata.get("quality"))
        #: a score over the threshold needs anatomical evidence to be a finding
        #: (:func:`.uncertainty.uncorroborated`). Choosing a threshold turns it off: the rule
        #: depends on the threshold, so the threshold comes from the scores of every study the
        #: quality gate passes.
        self.require_evidence = True
        self.levels: tuple[str, ...] = tuple(weights.metadata.get("levels", DISC_LEVELS))
        self.model = weights.build().to(self.device)
        enable_mc_dropout(self.model)
        self.identity = ModelIdentity(
            name=str(weights.metadata.get("name", "lstv-localizer")),
            version=str(weights.metadata.get("version", "0")),
            weights_sha256=weights.sha256,
            clinical_use=False,
        )

    @classmethod
    def from_settings(cls, model_settings: ModelSettings) -> LocalizerEngine:
        """Build from ``[model]`` settings (``weights`` empty = the packaged reference weights;
        ``calibration`` = a site calibration file, refused when made for other weights)."""
        return cls(
            load(model_settings.weights),
            device=model_settings.device,
            mc_samples=model_settings.mc_samples,
            cpu_threads=model_settings.cpu_threads,
            max_batch=model_settings.max_batch,
            lstv_threshold=model_settings.lstv_threshold,
            review_margin=model_settings.review_margin,
            context_slices=model_settings.context_slices,
            amp=model_settings.amp,
            calibration=(
                load_calibration(model_settings.calibration)
                if model_settings.calibration is not None
                else None
            ),
        )

    @property
    def device_name(self) -> str:
        if self.device.type == "cuda":
            idx = self.device.index or 0
            return f"cuda:{idx} ({torch.cuda.get_device_name(idx)})" + (" bf16" if self.amp else "")
        return f"cpu ({torch.get_num_threads()} threads)"

    def encode(self, inputs: torch.Tensor) -> Encoded | None:
        """The network's contracting path on canonical inputs ``[K, 1, S, S]`` (no dropout in
        it, so one pass serves every MC sample); None for a network without ``encode``."""
        encode = getattr(self.model, "encode", None)
        if encode is None or not hasattr(self.model, "decode"):
            return None
        parts: list[Encoded] = []
        with torch.inference_mode():
            for start in range(0, inputs.shape[0], self.max_batch):
                chunk = inputs[start : start + self.max_batch].to(self.device, non_blocking=True)
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    bottom, skips = encode(chunk)
                parts.append(Encoded(bottom, list(skips)))
        return Encoded.cat(parts)

    def predict(
        self, inputs: torch.Tensor, mc: bool = True, encoded: Encoded | None = None
    ) -> np.ndarray:
        """Probability maps ``[K, T, levels, S, S]`` for canonical inputs ``[K, 1, S, S]``; with
        ``mc`` False one deterministic pass (dropout off, T = 1). ``encoded``: the inputs'
        :meth:`encode` output when already at hand.

        The encoder runs once per input and only the expanding path (where the dropout is) runs
        T times, on the same (input, pass) batches and dropout draws as whole forward passes,
        so the maps are those of T whole passes."""
        k = inputs.shape[0]
        t = self.mc_samples if mc else 1
        out: list[torch.Tensor] = []
        devices = [self.device.index or 0] if self.device.type == "cuda" else []
        set_dropout(self.model, mc)
        try:
            with torch.random.fork_rng(devices=devices), torch.inference_mode():
                torch.manual_seed(self.seed)
                if encoded is None:
                    encoded = self.encode(inputs)
                if encoded is None:
                    batch = inputs.repeat_interleave(t, dim=0)
                masks = self.dropout_masks(k * t) if mc and encoded is not None else None
                for start in range(0, k * t, self.max_batch):
                    end = min(k * t, start + self.max_batch)
                    with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                        if encoded is None:
                            chunk = batch[start:end]
                            logits = self.model(chunk.to(self.device, non_blocking=True))
                        else:
                            rows = torch.arange(start, end) // t
                            part = encoded.take(rows.to(encoded.bottom.device))
                            drops = None
                            if masks is not None:
                                drops = [m[start:end].to(self.device) for m in masks]
                            logits = self.model.decode(part.bottom, part.skips, drops)
                    out.append(spatial_softmax(logits).float().cpu())
        finally:
            set_dropout(self.model, True)
        maps = torch.cat(out).numpy()
        return maps.reshape(k, t, *maps.shape[1:])

    def dropout_masks(self, rows: int) -> list[torch.Tensor] | None:
        """The Monte-Carlo dropout masks of ``rows`` (input, pass) pairs: drawn on the CPU from
        ``seed``, so the passes are the same subnetworks on every device and batch size, the
        ones the threshold was chosen with; None for a network that draws its own."""
        make = getattr(self.model, "dropout_masks", None)
        if make is None:
            return None
        return list(make(rows, torch.Generator().manual_seed(self.seed)))

    def warm_up(self) -> None:
        """One deterministic and one MC pass on a blank input of the study's batch shape, so that
        the first study does not pay for setting up the kernels and the thread pool."""
        blank = torch.zeros(self.context_slices, 1, self.grid.size, self.grid.size)
        self.predict(blank[:1], mc=False)
        self.predict(blank, mc=True)

    def midline_candidates(self, frames: list[SliceFrame]) -> list[int]:
        """Slices within :data:`.midline.SEARCH_MM` of the stack's centre (else the nearest
        one). Geometry only: nothing is decoded."""
        offsets = midline.offsets_mm(frames)
        return midline.window(offsets, midline.stack_centre(offsets))

    def _merit(self, canonical: CanonicalSlices, indices: list[int]) -> dict[int, float]:
        """Each slice's mean peak confidence of the reference levels (L1-L2 .. L3-L4) in one
        deterministic pass."""
        maps = self.predict(
            canonical.inputs(indices), mc=False, encoded=canonical.encoded(indices)
        )[:, 0]
        ref = [self.levels.index(lv) for lv in unc.REFERENCE_LEVELS if lv in self.levels]
        return {
            k: float(np.mean([unc.peak_confidence(maps[i, li]) for li in ref]))
            for i, k in enumerate(indices)
        }

    def midline_slice(
        self, canonical: CanonicalSlices, frames: list[SliceFrame]
    ) -> tuple[int, str]:
        """The mid-sagittal slice (:mod:`.midline`) and a note when it was not looked for
        around the stack's centre. Within :data:`.midline.SEARCH_MM` of the stack's centre,
        the slice where the reference levels are found most sharply, ties going to the slice
        nearest the centre (technologists centre the stack on the spine). Only when the sharp
        slices crowd one end of that window are the slices beyond it read, one by one while
        they stay sharp; and only when the sharp band so found is centred more than
        :data:`.midline.SYMMETRY_GUARD_MM` from the stack's centre is the whole stack read and
        the search moved to the stack's left-right symmetry centre."""
        offsets = midline.offsets_mm(frames)
        near = self.midline_candidates(frames)
        merit = self._merit(canonical, near)
        centre = midline.stack_centre(offsets)
        end = midline.lopsided_end(merit, offsets, near)
        if end is None:
            return midline.best_slice(merit, offsets, centre), ""
        for k in midline.beyond_window(offsets, near, end):
            merit.update(self._merit(canonical, [k]))
            if merit[k] < max(merit.values()) - midline.BAND:
                break
        if not midline.band_off_centre(merit, offsets):
            return midline.best_slice(merit, offsets, centre), ""
        rest = [k for k in range(len(frames)) if k not in merit]
        if rest:
            merit.update(self._merit(canonical, rest))
        images = canonical.inputs(list(range(len(frames))))[:, 0].numpy()
        centre, note = midline.search_centre(merit, images, offsets)
        return midline.best_slice(merit, offsets, centre), note

    def context(self, centre: int, n_slices: int, slice_spacing_mm: float = 0.0) -> list[int]:
        """``context_slices`` slice indices with ``centre`` among them, inside the series, about
        :data:`CONTEXT_SPACING_MM` apart: consecutive slices of a 2-D series (3-5 mm, as the
        network was trained on), every n-th thin partition of a 3-D one."""
        count = min(self.context_slices, n_slices)
        step = max(1, round(CONTEXT_SPACING_MM / slice_spacing_mm)) if slice_spacing_mm > 0 else 1
        while step > 1 and centre // step + (n_slices - 1 - centre) // step + 1 < count:
            step -= 1  # too few slices on this grid around the centre
        below, above = centre // step, (n_slices - 1 - centre) // step
        before = min(below, max(count // 2, count - 1 - above))
        return [centre + step * (k - before) for k in range(count)]

    def _repair_chain(
        self,
        stats: dict[str, unc.LevelStats],
        means: list[np.ndarray],
        disc_map: np.ndarray | None,
    ) -> tuple[str, str]:
        """Move the one level of L1-L2 .. L4-L5 whose second peak makes an implausible chain
        plausible (:func:`.uncertainty.repair_chain`; ``means``: every level's mean map) in
        ``stats``, else count them up from L5-S1 along the discs of ``disc_map``
        (:func:`.uncertainty.count_up_chain`). Returns how (``second_peak`` / ``counted_up``)
        and a warning saying so, or ("", "")."""
        candidates = [unc.peaks(mean) for mean in means[:-1]]
        last = stats[self.levels[-1]]
        junction = unc.Peak(last.x, last.y, last.peak_confidence)
        fix = unc.repair_chain(candidates, self.grid.spacing_mm, junction)
        if fix is None:
            points = unc.chain_mm([*(c[0] for c in candidates), junction], self.grid.spacing_mm)
            if disc_map is None or not unc.implausible(points[:4]) or unc.extra_segment(points):
                return "", ""  # plausible, or a sign: an extra segment in the chain
            warning = self._count_up(stats, means, disc_map, junction)
            return ("counted_up" if warning else ""), warning
        level = self.levels[fix.level]
        stats[level] = replace(stats[level], x=fix.peak.x, y=fix.peak.y)
        shift = self.grid.spacing_mm * float(
            np.hypot(fix.peak.x - fix.replaced.x, fix.peak.y - fix.replaced.y)
        )
        return "second_peak", (
            f"{level} placed on the second peak of its map ({fix.peak.mass:.2f} of its "
            f"probability against {fix.replaced.mass:.2f}, {shift:.0f} mm away): the first made "
            "the distances between the levels inconsistent"
        )

    def _count_up(
        self,
        stats: dict[str, unc.LevelStats],
        means: list[np.ndarray],
        disc_map: np.ndarray,
        junction: unc.Peak,
    ) -> str:
        """L1-L2 .. L4-L5 counted up from L5-S1 along the discs (in ``stats``); a warning, or ""."""
        recount = unc.count_up_chain(means[:-1], disc_map, junction, self.grid.spacing_mm)
        if recount is None:
            return ""
        moved = []
        for level, point in zip(self.levels, recount.points, strict=False):
            st = stats[level]
            if np.hypot(point.x - st.x, point.y - st.y) * self.grid.spacing_mm > 5.0:
                moved.append(level)
            stats[level] = replace(st, x=point.x, y=point.y)
        return (
            f"{', '.join(moved)} counted up from L5-S1 disc by disc (support of the levels' maps "
            f"{recount.support:.2f} against {recount.runner_up:.2f} one disc off): their own "
            "peaks made the distances between the levels inconsistent"
        )

    def _field_mm(self, mask: np.ndarray, st: unc.LevelStats, direction: int) -> float:
        """How far (mm) the imaged field reaches from a level's point straight up (-1) or down
        (+1) on the canonical grid (mask > 0.5 = inside)."""
        col = int(np.clip(round(st.x), 0, mask.shape[1] - 1))
        row = int(np.clip(round(st.y), 0, mask.shape[0] - 1))
        steps = 0
        while 0 <= row + direction * (steps + 1) < mask.shape[0]:
            if mask[row + direction * (steps + 1), col] <= 0.5:
                break
            steps += 1
        return steps * self.grid.spacing_mm

    def prepare(self, volume: SeriesVolume) -> None:
        """Do ahead the work :meth:`analyze` starts with (e.g. while a study's quiet time runs):
        decode the mid-sagittal search window, put it on the canonical grid, encode it. The
        engine keeps it for the next :meth:`analyze` of this very volume object; the decoded
        pixels are let go. Raises :class:`~scp_node.slices.SliceDecodeError` like analyze."""
        self._prepared = None
        frames = slice_frames(volume)
        canonical = CanonicalSlices(volume, frames, self.grid, self.encode)
        canonical.encoded(self.midline_candidates(frames))
        self._prepared = canonical

    def analyze(self, volume: SeriesVolume) -> StudyResult:
        """Localize the disc levels on ``volume`` and compute the LSTV screen (with the work of
        :meth:`prepare` when it was done for this volume)."""
        started = time.perf_counter()
        frames = slice_frames(volume)
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared.volume is volume:
            canonical = prepared
        else:
            canonical = CanonicalSlices(volume, frames, self.grid, self.encode)
        spent = (canonical.decode_s, canonical.canonical_s)
        centre, off_centre = self.midline_slice(canonical, frames)
        indices = self.context(centre, len(frames), volume.slice_spacing)
        indices.sort(key=lambda k: -float(frames[k].origin[0]))  # left to right, however stored
        maps = self.predict(canonical.inputs(indices), encoded=canonical.encoded(indices))
        frame = frames[centre]
        stats: dict[str, unc.LevelStats] = {}
        findings: list[LevelFinding] = []
        points_mm: list[tuple[float, float]] = []
        coverage: dict[str, float] = {}
        mask = canonical.mask(centre)
        means: list[np.ndarray] = []
        for li, level in enumerate(self.levels):
            samples = maps[:, :, li].reshape(-1, *maps.shape[-2:])
            stats[level] = unc.level_stats(samples)
            means.append(samples.mean(axis=0))
            coverage[level] = float((means[-1] * (mask > 0.5)).sum())
        warnings = list(volume.warnings) + ([off_centre] if off_centre else [])
        disc_map = None
        if maps.shape[2] > len(self.levels):  # the auxiliary mobile-discs channel
            disc_map = maps[:, :, len(self.levels)].reshape(-1, *maps.shape[-2:]).mean(axis=0)
        repair, repaired = self._repair_chain(stats, means, disc_map)
        if repaired:
            warnings.append(repaired)
        for level in self.levels:
            st = stats[level]
            col, row = frame.canonical_to_source(self.grid, st.x, st.y)
            if not frame.inside_source(col, row):
                coverage[level] = 0.0
            xyz = volume.pixel_to_patient(centre, col, row)
            points_mm.append((st.x * self.grid.spacing_mm, st.y * self.grid.spacing_mm))
            findings.append(
                LevelFinding(
                    level=level,
                    sop_instance_uid=volume.sop_instance_uids[centre],
                    slice_index=centre,
                    pixel_xy=(round(col, 3), round(row, 3)),
                    patient_xyz=(round(xyz[0], 3), round(xyz[1], 3), round(xyz[2], 3)),
                    peak_confidence=round(st.peak_confidence, 6),
                    entropy=round(st.entropy, 6),
                    spatial_entropy=round(st.spatial_entropy, 6),
                    predictive_entropy=round(st.predictive_entropy, 6),
                    mutual_information=round(st.mutual_information, 6),
                    frame_number=volume.frame_numbers[centre],
                )
            )
        evidence = None
        if disc_map is not None:
            evidence = unc.disc_evidence(
                disc_map, [(stats[lv].x, stats[lv].y) for lv in self.levels], self.grid.spacing_mm
            )
        segment = unc.extra_segment(points_mm) or unc.junction_two_segments(points_mm)
        score = unc.lstv_score(stats, evidence, extra_segment=bool(segment))
        gap_ratio = unc.junction_gap_ratio(points_mm)
        field_mm = (
            self._field_mm(mask, stats[self.levels[0]], -1),
            self._field_mm(mask, stats[self.levels[-1]], +1),
        )
        reason = unc.not_assessable_reason(
            stats, points_mm, coverage, len(frames), self.quality, field_mm
        )
        junction = unc.junction_implausible(points_mm)
        if junction:
            warnings.append(f"lumbosacral junction: {junction}")
        assessable = not reason
        held_back = ""
        if assessable and score >= self.threshold and self.require_evidence:
            shortening = unc.junction_shortening(gap_ratio)
            held_back = unc.uncorroborated(evidence, shortening, extra_segment=bool(segment))
        if segment and assessable:
            warnings.append(f"extra segment: {segment}")
        suspected = assessable and score >= self.threshold and not held_back
        elapsed = (time.perf_counter() - started) * 1000.0
        decode_s, canonical_s = canonical.decode_s - spent[0], canonical.canonical_s - spent[1]
        self.timings = {
            "decode_s": decode_s,
            "canonical_s": canonical_s,
            "model_s": elapsed / 1000.0 - decode_s - canonical_s,
        }
        return StudyResult(
            study_instance_uid=volume.study_instance_uid,
            applicable=True,
            series_instance_uid=volume.series_instance_uid,
            levels=tuple(findings),
            lstv_score=round(score, 6),
            lstv_threshold=self.threshold,
            lstv_suspected=suspected,
            junction_disc_signal=None if evidence is None else round(evidence.junction, 4),
            below_disc_signal=None if evidence is None else round(evidence.below, 4),
            junction_gap_ratio=round(gap_ratio, 4),
            extra_segment=segment,
            levels_repaired=repair,
            needs_review=not assessable
            or bool(held_back)
            or bool(junction)
            or bool(repaired)
            or bool(off_centre)
            or bool(segment)
            or abs(score - self.threshold) <= self.review_margin,
            assessable=assessable,
            not_assessable_reason=reason,
            held_back=held_back,
            calibration=self.calibration_label,
            model=self.identity,
            device=self.device_name,
            inference_ms=round(elapsed, 2),
            warnings=tuple(warnings),
            evidence=unc.finding_evidence(evidence, gap_ratio, segment) if suspected else (),
        )


class CanonicalSlices:
    """Canonical inputs and masks of a series' slices, made (and their pixels decoded) only for
    the slices asked for, once each. Each slice is canonicalised on its own, so a subset gives
    exactly the values the whole series would."""

    def __init__(
        self,
        volume: SeriesVolume,
        frames: list[SliceFrame],
        grid: CanonicalGrid,
        encode: Callable[[torch.Tensor], Encoded | None],
    ):
        self.volume = volume
        self.frames = frames
        self.grid = grid
        self.encode = encode
        self._encoded: dict[int, Encoded] = {}
        self._inputs: dict[int, torch.Tensor] = {}
        self._masks: dict[int, torch.Tensor] = {}
        self.decode_s = 0.0
        self.canonical_s = 0.0

    def _make(self, indices: list[int]) -> None:
        missing = [k for k in dict.fromkeys(indices) if k not in self._inputs]
        if not missing:
            return
        started = time.perf_counter()
        pixels = self.volume.volume
        if isinstance(pixels, np.ndarray):
            images: Iterable[tuple[int, np.ndarray]] = ((k, pixels[k]) for k in missing)
        else:
            images = pixels.load_each(missing)  # decoding goes on while one is canonicalised
        canonical_s = 0.0
        for k, image in images:
            began = time.perf_counter()
            inputs, masks = to_canonical([image], [self.frames[k]], self.grid)
            self._inputs[k], self._masks[k] = inputs, masks
            canonical_s += time.perf_counter() - began
        self.canonical_s += canonical_s
        self.decode_s += time.perf_counter() - started - canonical_s

    def inputs(self, indices: list[int]) -> torch.Tensor:
        """``[len(indices), 1, S, S]`` canonical inputs."""
        self._make(indices)
        return torch.cat([self._inputs[k] for k in indices])

    def encoded(self, indices: list[int]) -> Encoded | None:
        """The encoder features of ``indices`` (each slice encoded once per study)."""
        missing = [k for k in dict.fromkeys(indices) if k not in self._encoded]
        if missing:
            features = self.encode(self.inputs(missing))
            if features is None:
                return None
            for i, k in enumerate(missing):
                self._encoded[k] = features.take(torch.tensor([i], device=features.bottom.device))
        return Encoded.cat([self._encoded[k] for k in indices])

    def mask(self, k: int) -> np.ndarray:
        """The validity mask ``[S, S]`` of slice ``k``."""
        self._make([k])
        return self._masks[k][0, 0].numpy()


@dataclass
class Encoded:
    """The contracting path's output for a batch: bottleneck and skip features."""

    bottom: torch.Tensor
    skips: list[torch.Tensor]

    def take(self, rows: torch.Tensor) -> Encoded:
        """The features of batch rows ``rows`` (repeats allowed)."""
        return Encoded(self.bottom[rows], [s[rows] for s in self.skips])

    @staticmethod
    def cat(parts: list[Encoded]) -> Encoded:
        if len(parts) == 1:
            return parts[0]
        return Encoded(
            torch.cat([p.bottom for p in parts]),
            [torch.cat(level) for level in zip(*(p.skips for p in parts), strict=True)],
        )
