"""The outbox worker: delivers due rows, retries (exponential backoff, full jitter), dead-letters.

Retry delay after attempt *n* (1-based) is uniform in ``[0, min(backoff_max_s, backoff_initial_s *
2**(n-1))]`` ("full jitter"); after ``max_attempts`` failed attempts the row is ``dead`` until
``scp-node outbox retry`` resets it. Rows left in ``sending`` by a crash are due again at start.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import Dataset

from scp_node import audit
from scp_node.config import DeliverySettings, Destination, Settings
from scp_node.egress import commitment, dimse, stow
from scp_node.egress.outcome import Outcome
from scp_node.identity import stamp
from scp_node.observe import DEAD_LETTERS
from scp_node.store.db import Database
from scp_node.store.outbox import HELD, PENDING, Outbox, OutboxRow
from scp_node.store.spool import Spool

log = logging.getLogger(__name__)

#: (destination, calling AE, rows) → one outcome per row; the default dispatches on ``kind``.
Sender = Callable[[Destination, str, Sequence[OutboxRow]], list[Outcome]]


def send_rows(dest: Destination, calling_ae: str, rows: Sequence[OutboxRow]) -> list[Outcome]:
    """Deliver ``rows`` to ``dest``: results with C-STORE or STOW-RS (``dest.kind``), Storage
    Commitment reports with N-EVENT-REPORT (a DIMSE destination only)."""
    reports = [r for r in rows if r.sop_class_uid == commitment.COMMITMENT_CLASS]
    results = [r for r in rows if r.sop_class_uid != commitment.COMMITMENT_CLASS]
    outcomes: dict[int, Outcome] = {}
    if reports and dest.kind != "dimse":
        error = "a storage commitment report needs a DIMSE destination, not STOW-RS"
        outcomes.update({r.id: Outcome.failed(error) for r in reports})
    elif reports:
        sent = commitment.send_reports(dest, calling_ae, [r.path for r in reports])
        outcomes.update({r.id: o for r, o in zip(reports, sent, strict=True)})
    if results and dest.kind == "stow":
        sent = stow.send_files(dest, [r.path for r in results])
        outcomes.update({r.id: o for r, o in zip(results, sent, strict=True)})
    elif results:
        sent = dimse.send_files(dest, calling_ae, [(r.path, r.sop_class_uid) for r in results])
        outcomes.update({r.id: o for r, o in zip(results, sent, strict=True)})
    return [outcomes[r.id] for r in rows]


def resolve_destinations(calling_ae: str, settings: Settings | DeliverySettings) -> list[str]:
    """Where a study's results go: ``reply_to_sender[calling_ae]`` if set, else the defaults.

    Names that are not configured destinations are dropped (with a warning).
    """
    delivery = settings.delivery if isinstance(settings, Settings) else settings
    mapped = delivery.reply_to_sender.get(calling_ae.strip()) if calling_ae else None
    names = [mapped] if mapped else list(delivery.default_destinations)
    known = [n for n in names if n in delivery.destinations]
    for name in set(names) - set(known):
        log.warning("destination %r is not configured in [delivery.destinations]", name)
    return known


def backoff_delay(attempts: int, initial: float, maximum: float, rng: random.Random) -> float:
    """Full-jitter exponential backoff after ``attempts`` failed attempts (seconds)."""
    ceiling = min(maximum, initial * 2 ** max(0, attempts - 1))
    return rng.uniform(0, ceiling)


def _writer(ds: Dataset) -> Callable[[BinaryIO], None]:
    def write(handle: BinaryIO) -> None:
        stamp(ds).save_as(handle, enforce_file_format=True)

    return write


class OutboxWorker:
    """Background outbox delivery (``start()`` / ``stop()``) and the pipeline's entry points."""

    def __init__(
        self,
        db: Database,
        delivery: DeliverySettings,
        results_dir: Path | None = None,
        calling_ae: str = "LSTV_NODE",
        *,
        fsync: bool = True,
        sender: Sender = send_rows,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.delivery = delivery
        self.results_dir = Path(results_dir) if results_dir else db.path.parent / "results"
        self.calling_ae = calling_ae
        self.fsync = fsync
        self.sender = sender
        self.rng = rng or random.Random()
        self.outbox = Outbox(db, clock)
        self.results = Spool(self.results_dir, fsync=fsync)
        self.clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for name in delivery.destinations:  # exported as 0, so that increase() sees the first
            for kind in ("result", "commitment"):
                DEAD_LETTERS.labels(destination=name, kind=kind)

    # --- the pipeline's side ------------------------------------------------------------------
    def enqueue_results(
        self, study_uid: str, datasets: Sequence[Dataset], destinations: Sequence[str]
    ) -> list[int]:
        """Write each dataset durably under ``results_dir`` and queue it for each destination
        (in shadow mode: a ``held`` row per destination, never sent)."""
        ids: list[int] = []
        state = HELD if self.shadow else PENDING
        for ds in datasets:
            path = self.result_path(study_uid, ds)
            self.results.write(path, _writer(ds))
            for name in destinations:
                ids.append(
                    self.outbox.enqueue(
                        study_uid, str(ds.SOPInstanceUID), str(ds.SOPClassUID), path, name, state
                    )
                )
        if self.shadow:
            log.info("shadow mode: %d results of study %s kept, not sent", len(datasets), study_uid)
            return ids
        log.info("queued %d deliveries for study %s", len(ids), study_uid)
        self.wake()
        return ids

    def enqueue_commitment_report(self, info: Dataset, destination: str) -> int:
        """Write a Storage Commitment Event Information durably and queue its N-EVENT-REPORT
        to ``destination`` (sent in shadow mode too: it answers the requester, it is no result).
        The row has no study (``study_uid`` empty) so it never counts as a study's delivery."""
        transaction, ds = commitment.report_dataset(info)
        path = self.results_dir / "commitment" / f"{transaction}.dcm"
        self.results.write(path, _writer(ds))
        row_id = self.outbox.enqueue(
            "", transaction, commitment.COMMITMENT_CLASS, path, destination, PENDING
        )
        log.info(
            "storage commitment transaction %s: report queued for %s (outbox #%d)",
            transaction,
            destination,
            row_id,
        )
        return row_id

    @property
    def shadow(self) -> bool:
        """``[delivery] mode = "shadow"``: results are kept, nothing is sent."""
        return self.delivery.mode == "shadow"

    def result_path(self, study_uid: str, ds: Dataset) -> Path:
        """Where :meth:`enqueue_results` keeps a result file."""
        return self.results.path_for(study_uid, str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID))

    def study_delivered(self, study_uid: str) -> bool:
        """True when the study has deliveries and every one of them is ``delivered``."""
        return self.outbox.study_delivered_at(study_uid) is not None

    def study_delivered_at(self, study_uid: str) -> float | None:
        """When the study's last delivery was acknowledged (all delivered), else None."""
        return self.outbox.study_delivered_at(study_uid)

    # --- the thread ---------------------------------------------------------------------------
    def start(self) -> None:
        if self.shadow:
            log.warning(
                'shadow mode ([delivery] mode = "shadow"): results are kept in the node and '
                "nothing is sent to any destination"
            )
        recovered = self.outbox.recover()
        if recovered:
            log.warning(
                "outbox: %d deliveries interrupted by a restart are pending again", recovered
            )
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the outbox now (new rows, or a retry)."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # a broken pass must not end delivery for good
                log.exception("outbox pass failed")
            wait = self.delivery.poll_interval_s
            due = self.outbox.next_due_at(commitment.COMMITMENT_CLASS if self.shadow else None)
            if due is not None:
                wait = min(wait, max(0.0, due - self.clock()))
            self._wake.wait(wait)
            self._wake.clear()

    # --- one pass -----------------------------------------------------------------------------
    def deliver_due(self, ids: list[int] | None = None) -> int:
        """Send every due row (or only ``ids``) once; returns how many were delivered.
        In shadow mode only Storage Commitment reports are sent (pending results wait for
        ``mode = "send"``)."""
        only = commitment.COMMITMENT_CLASS if self.shadow else None
        rows = self.outbox.claim_due(
            limit=max(1, self.delivery.batch_size) * 8, ids=ids, sop_class_uid=only
        )
        by_destination: dict[str, list[OutboxRow]] = defaultdict(list)
        for row in rows:
            by_destination[row.destination].append(row)
        delivered = 0
        for name, group in by_destination.items():
            dest = self.delivery.destinations.get(name)
            for start in range(0, len(group), max(1, self.delivery.batch_size)):
                batch = group[start : start + max(1, self.delivery.batch_size)]
                outcomes = self._send(name, dest, batch)
                audit.results_sent(name, dest, batch, outcomes, self.delivery.max_attempts)
                for row, outcome in zip(batch, outcomes, strict=True):
                    delivered += self._record(row, outcome)
        return delivered

    def _send(self, name: str, dest: Destination | None, rows: list[OutboxRow]) -> list[Outcome]:
        if dest is None:
            return [Outcome.failed(f"destination {name!r} is not configured")] * len(rows)
        present = [r for r in rows if r.path.is_file()]
        results: dict[int, Outcome] = {
            r.id: Outcome.failed(f"result file {r.path} is missing") for r in rows
        }
        if present:
            try:
                sent = self.sender(dest, self.calling_ae, present)
            except Exception as exc:  # a sender bug or an unexpected network error
                log.exception("sending to %s failed", name)
                sent = [Outcome.failed(f"{type(exc).__name__}: {exc}")] * len(present)
            results.update({r.id: o for r, o in zip(present, sent, strict=True)})
        return [results[r.id] for r in rows]

    def _record(self, row: OutboxRow, outcome: Outcome) -> int:
        what = (
            f"outbox #{row.id} ({row.sop_instance_uid} → {row.destination}, attempt {row.attempts})"
        )
        if outcome.ok:
            if self.outbox.mark_delivered(row):
                log.info("%s delivered", what)
                return 1
            return 0
        status = f" [status 0x{outcome.status:04X}]" if outcome.status is not None else ""
        if row.attempts >= self.delivery.max_attempts:
            log.error(
                "%s failed, dead letter after %d attempts: %s%s",
                what,
                row.attempts,
                outcome.error,
                status,
            )
            if self.outbox.mark_failed(row, outcome.error + status, None):
                kind = (
                    "commitment" if row.sop_class_uid == commitment.COMMITMENT_CLASS else "result"
                )
                DEAD_LETTERS.labels(destination=row.destination, kind=kind).inc()
            return 0
        delay = backoff_delay(
            row.attempts, self.delivery.backoff_initial_s, self.delivery.backoff_max_s, self.rng
        )
        log.warning("%s failed, retry in %.2f s: %s%s", what, delay, outcome.error, status)
        self.outbox.mark_failed(row, outcome.error + status, self.clock() + delay)
        return 0


def worker_for(settings: Settings, db: Database, **kwargs: Any) -> OutboxWorker:
    """An :class:`OutboxWorker` wired from the node's settings."""
    return OutboxWorker(
        db,
        settings.delivery,
        settings.storage.results_dir,
        settings.dicom.ae_title,
        fsync=settings.storage.fsync,
        **kwargs,
    )
