"""The model worker: the one thread that owns the model (and the GPU) and runs claimed jobs."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset

from scp_node.config import Settings
from scp_node.observe import (
    INFERENCE_SECONDS,
    JOB_OUTCOMES,
    LSTV_THRESHOLD,
    STAGE_SECONDS,
    record_screen,
)
from scp_node.result import StudyResult
from scp_node.store.index import InstanceIndex, InstanceRecord
from scp_node.store.jobs import (
    FAILED,
    NOT_APPLICABLE,
    QUEUED,
    RECEIVED,
    REPORTED,
    REPORTING,
    SHADOW,
    Job,
    JobStore,
)

log = logging.getLogger(__name__)

#: (study uid, result datasets, destination names) → outbox row ids
Enqueue = Callable[[str, Sequence[Dataset], Sequence[str]], list[int]]


#: glibc ``mallopt`` parameter number of M_MMAP_THRESHOLD (malloc.h)
_M_MMAP_THRESHOLD = -3


def map_large_blocks(threshold: int = 1 << 20) -> None:
    """Have glibc give blocks of ``threshold`` bytes or more their own mapping, returned to the
    system when freed (its default raises the threshold as blocks are freed, up to 32 MiB, and
    then keeps the model's freed activations in the heap). Received data sets (~0.5 MB) stay
    below it. A no-op where the C library has no ``mallopt``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).mallopt(_M_MMAP_THRESHOLD, threshold)


def return_free_memory() -> None:
    """Hand the memory freed by a study back to the operating system (glibc keeps freed heap
    pages in its arenas otherwise, so the resident set stays at the study's peak); a no-op
    where the C library has no ``malloc_trim``."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def _inputs_key(records: Sequence[InstanceRecord]) -> frozenset[tuple[str, int, float]]:
    """What a prepared analysis is valid for: each input file, its size and arrival time."""
    return frozenset((str(r.path), r.size, r.received_at) for r in records)


def _shadow_reason(destinations: Sequence[str]) -> str:
    """The job reason of a result kept in shadow mode."""
    where = f" (held for {', '.join(destinations)})" if destinations else " (no destination)"
    return "shadow mode: result kept, not sent" + where


def _read_highdicom_standard() -> None:
    """highdicom reads its copy of the standard's IOD and module tables (JSON, ~1.3 s here) when
    it builds its first SR; read them at start-up, not in the first study (its time to result).
    These loaders are private to highdicom (0.28, cached): a version without them is skipped."""
    try:
        from highdicom import _standard_utils as standard
    except ImportError:
        return
    for name in ("get_sop_class_iod_map", "get_iod_module_map", "get_module_attribute_map"):
        loader = getattr(standard, name, None)
        if callable(loader):
            loader()


class ModelWorker:
    """Claims ``complete`` jobs one at a time: analyse → report → outbox."""

    def __init__(
        self,
        settings: Settings,
        jobs: JobStore,
        index: InstanceIndex,
        enqueue: Enqueue,
        destinations_for: Callable[[str], list[str]],
        result_path: Callable[[str, Dataset], Path],
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.index = index
        self.enqueue = enqueue
        self.destinations_for = destinations_for
        self.result_path = result_path
        self.engine: Any = None
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()
        #: study UID -> its analysis started ahead of completion (at most one)
        self._prepared: dict[str, Any] = {}

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="model-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def wake(self) -> None:
        self._wake.set()

    def _load_engine(self) -> None:
        from scp_node.model.engine import LocalizerEngine

        map_large_blocks()
        started = time.perf_counter()
        self.engine = LocalizerEngine.from_settings(self.settings.model)
        log.info(
            "model loaded on %s in %.1f s (%s %s, weights sha256 %s)",
            self.engine.device_name,
            time.perf_counter() - started,
            self.engine.identity.name,
            self.engine.identity.version,
            self.engine.identity.weights_sha256[:12],
        )
        log.info("LSTV threshold %.4f (%s)", self.engine.threshold, self.engine.calibration_label)
        LSTV_THRESHOLD.set(self.engine.threshold)
        self._warm_up()
        self.ready.set()

    def _warm_up(self) -> None:
        """Pay the one-off costs before the first study, not in it: the report modules
        (highdicom) imported, the decoder self-test run, the network's kernels set up."""
        started = time.perf_counter()
        import scp_node.report.sr  # noqa: F401 - imported for its cost
        from scp_node.codecs import capabilities

        _read_highdicom_standard()

        capabilities()
        warm = getattr(self.engine, "warm_up", None)
        if warm is not None:
            warm()
        return_free_memory()
        log.info("model worker warmed up in %.1f s", time.perf_counter() - started)

    def _run(self) -> None:
        try:
            self._load_engine()
        except Exception:
            log.exception("the model could not be loaded: studies wait in 'complete'")
            return
        while not self._stop.is_set():
            job = self.jobs.claim_next()
            if job is None:
                try:
                    if self._prepare_quiet_study():
                        continue  # a study may have completed meanwhile
                except Exception:  # only a head start: the analysis at completion still runs
                    log.exception("preparing a quiet study failed")
                    self._prepared = {}
                self._wake.wait(self.settings.pipeline.poll_interval_s)
                self._wake.clear()
                continue
            try:
                self.process(job)
            except Exception as exc:  # one study must not stop the worker
                log.exception("study %s failed", job.study_uid)
                self.jobs.advance(job, FAILED, f"{type(exc).__name__}: {exc}"[:500])
                JOB_OUTCOMES.labels(outcome="failed").inc()
            finally:
                return_free_memory()  # the study's slices and activations, back to the system

    def _prepare_quiet_study(self) -> bool:
        """While no study is complete: do the first part of the analysis (series selection,
        decoding, canonical inputs) of a study still receiving that has been quiet for half its
        quiet time, so that completion leaves only the model and the report to do. Kept only
        for the same instance files; at most one study is held. True when work was done."""
        from scp_node.analysis import prepare_study

        quiet = self.settings.pipeline.quiet_seconds
        for job in self.jobs.in_state(RECEIVED):
            # one aggregate first: while a study is receiving, its rows are not loaded each time
            last = self.index.last_received(job.study_uid)
            if last is None or time.time() - last < max(0.2, quiet / 2):
                continue
            records = [r for r in self.index.for_study(job.study_uid) if r.source != "result"]
            key = _inputs_key(records)
            held = self._prepared.get(job.study_uid)
            if not records or (held is not None and held[0] == key):
                continue
            if time.time() - max(r.received_at for r in records) < max(0.2, quiet / 2):
                continue
            started = time.perf_counter()
            prepared = prepare_study([r.path for r in records], self.settings, self.engine)
            # a study prepared with nothing to prepare is remembered too (not tried again)
            self._prepared = {job.study_uid: (key, prepared)}
            log.info(
                "study %s: prepared while quiet in %.0f ms",
                job.study_uid,
                (time.perf_counter() - started) * 1000,
            )
            return True
        return False

    def process(self, job: Job) -> None:
        """Run one claimed job to its next resting state."""
        from scp_node.analysis import analyze_study

        records = self.index.for_study(job.study_uid)
        inputs = [r for r in records if r.source != "result"]
        paths = [r.path for r in inputs]
        key, prepared = self._prepared.pop(job.study_uid, (None, None))
        if key != _inputs_key(inputs):
            prepared = None  # instances came (or changed) after it was prepared
        started = time.perf_counter()
        result = analyze_study(paths, self.settings, self.engine, prepared)
        analysed = time.perf_counter()
        INFERENCE_SECONDS.observe(analysed - started)
        stages = self._analysis_stages(result, analysed - started)
        self.record(job, result, records, stages=stages)

    def record(
        self,
        job: Job,
        result: StudyResult,
        records: list[InstanceRecord] | None = None,
        annotations: dict[str, Any] | None = None,
        stages: dict[str, float] | None = None,
    ) -> None:
        """Take ``result`` (made here or by a cluster worker) to the job's next resting state:
        reports → outbox. ``annotations`` are kept with the job's result (e.g. which worker);
        ``stages`` are the analysis's stage times (logged with the report's)."""
        if records is None:
            records = self.index.for_study(job.study_uid)
        stages = {} if stages is None else stages
        summary = {**result.to_json(), **(annotations or {})}
        if not result.applicable:
            log.info("study %s: not applicable: %s", job.study_uid, result.reason)
            if self.jobs.advance(job, NOT_APPLICABLE, result.reason, summary):
                record_screen(result)  # counted once per outcome that stands (not a voided run)
            JOB_OUTCOMES.labels(outcome="not_applicable").inc()
            return
        if not result.assessable:
            log.info(
                "study %s: not assessable: %s (in %.0f ms)",
                job.study_uid,
                result.not_assessable_reason,
                result.inference_ms,
            )
        else:
            log.info(
                "study %s: LSTV score %.3f (threshold %.3f) suspected=%s needs_review=%s "
                "in %.0f ms",
                job.study_uid,
                result.lstv_score,
                result.lstv_threshold,
                result.lstv_suspected,
                result.needs_review,
                result.inference_ms,
            )
        if not self.jobs.advance(job, REPORTING, "", summary):
            log.info(
                "study %s: new instances arrived during inference; it runs again", job.study_uid
            )
            return
        record_screen(result)
        return_free_memory()  # the model's activations, before the report's objects are made
        reporting = time.perf_counter()
        datasets = self._reports(result, records)
        stages["report"] = time.perf_counter() - reporting
        self._log_stages(job.study_uid, stages)
        destinations = self.destinations_for(job.calling_ae)
        # written once, durably, by the outbox (also with no destination: results stay retrievable)
        self.enqueue(job.study_uid, datasets, destinations)
        self._index_results(job.study_uid, datasets)
        if self.settings.delivery.mode == "shadow":
            self.jobs.advance(job, SHADOW, _shadow_reason(destinations), summary)
            JOB_OUTCOMES.labels(outcome="shadow").inc()
            return
        if not destinations:
            self.jobs.advance(job, REPORTED, "no destination configured", summary)
            JOB_OUTCOMES.labels(outcome="reported").inc()
            return
        self.jobs.advance(job, QUEUED, "", summary)

    def _analysis_stages(self, result: StudyResult, total_s: float) -> dict[str, float]:
        """Seconds of the analysis by stage: select (headers, sorting), decode, canonical,
        model; from the engine's timings of this study (none when it never ran)."""
        timings = dict(getattr(self.engine, "timings", {}) or {}) if result.applicable else {}
        stages = {k.removesuffix("_s"): float(v) for k, v in timings.items()}
        stages["select"] = max(0.0, total_s - sum(stages.values()))
        return stages

    def _log_stages(self, study_uid: str, stages: dict[str, float]) -> None:
        for stage, seconds in stages.items():
            STAGE_SECONDS.labels(stage=stage).observe(seconds)
        log.info(
            "study %s: stage times %s",
            study_uid,
            " ".join(f"{k}={v * 1000:.0f}ms" for k, v in stages.items()),
        )

    def _reports(self, result: StudyResult, records: list[InstanceRecord]) -> list[Dataset]:
        """The SR (headers suffice) and the SC (pixels of the one slice it draws on)."""
        from scp_node.report.sc import chosen_slice
        from scp_node.report.sr import build_reports

        drawn = chosen_slice(result) if self.settings.report.secondary_capture else None
        sources: list[Dataset] = [
            pydicom.dcmread(r.path, stop_before_pixels=r.sop_instance_uid != drawn)
            for r in records
            if r.series_uid == result.series_instance_uid
        ]
        return build_reports(result, sources, self.settings.report)

    def _index_results(self, study_uid: str, datasets: Sequence[Dataset]) -> None:
        """Keep the results retrievable (WADO-RS) without making them inputs of the study."""
        for ds in datasets:
            path = self.result_path(study_uid, ds)
            self.index.add(
                InstanceRecord(
                    sop_instance_uid=str(ds.SOPInstanceUID),
                    sop_class_uid=str(ds.SOPClassUID),
                    study_uid=study_uid,
                    series_uid=str(ds.SeriesInstanceUID),
                    transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
                    path=path,
                    size=path.stat().st_size,
                    modality=str(ds.Modality),
                    patient_id=str(ds.get("PatientID", "")),
                    source="result",
                    received_at=time.time(),
                ),
                touch_study=False,
            )
