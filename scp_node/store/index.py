"""Index of received instances and their studies (SQLite tables ``instances`` and ``studies``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from scp_node.store.db import Database, register_schema

register_schema(
    "index",
    """
    CREATE TABLE IF NOT EXISTS instances (
        sop_instance_uid TEXT PRIMARY KEY,
        sop_class_uid    TEXT NOT NULL,
        study_uid        TEXT NOT NULL,
        series_uid       TEXT NOT NULL,
        transfer_syntax  TEXT NOT NULL,
        modality         TEXT NOT NULL DEFAULT '',
        patient_id       TEXT NOT NULL DEFAULT '',
        path             TEXT NOT NULL,
        size             INTEGER NOT NULL,
        calling_ae       TEXT NOT NULL DEFAULT '',
        called_ae        TEXT NOT NULL DEFAULT '',
        peer             TEXT NOT NULL DEFAULT '',
        source           TEXT NOT NULL DEFAULT 'dimse',
        received_at      REAL NOT NULL,
        times_received   INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX IF NOT EXISTS instances_study ON instances (study_uid, series_uid);
    CREATE TABLE IF NOT EXISTS instance_headers (
        sop_instance_uid TEXT PRIMARY KEY,
        header           BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS studies (
        study_uid         TEXT PRIMARY KEY,
        first_received_at REAL NOT NULL,
        last_received_at  REAL NOT NULL,
        calling_ae        TEXT NOT NULL DEFAULT '',
        source            TEXT NOT NULL DEFAULT 'dimse'
    );
    """,
)


@dataclass(frozen=True)
class InstanceRecord:
    """One stored instance, as the index knows it."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str
    path: Path
    size: int
    modality: str = ""
    patient_id: str = ""
    calling_ae: str = ""
    called_ae: str = ""
    peer: str = ""
    source: str = "dimse"
    received_at: float = 0.0


class InstanceIndex:
    """Adds and looks up instances; an instance is added only after its file is durable."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        rec: InstanceRecord,
        touch_study: bool = True,
        header: bytes | None = None,
        durable: bool = False,
    ) -> bool:
        """Index ``rec`` (the file is already in place). Returns False if it was a duplicate.

        A duplicate SOP Instance UID replaces the earlier record (the file was replaced too).
        ``touch_study`` False (non-image objects, the node's own results) leaves the study's
        arrival times alone, so such objects never start or repeat an analysis.
        ``header`` is the encoded data set before its Pixel Data (in the record's transfer
        syntax; inflated for Deflated): QIDO-RS and WADO-RS metadata are answered from it.
        ``durable``: flushed before it returns (see :meth:`Database.transaction`).
        """
        now = rec.received_at or time.time()
        with self.db.transaction(durable) as conn:
            existed = conn.execute(
                "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (rec.sop_instance_uid,)
            ).fetchone()
            conn.execute(
                """
                INSERT INTO instances (sop_instance_uid, sop_class_uid, study_uid, series_uid,
                    transfer_syntax, modality, patient_id, path, size, calling_ae, called_ae, peer,
                    source, received_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (sop_instance_uid) DO UPDATE SET
                    sop_class_uid = excluded.sop_class_uid, study_uid = excluded.study_uid,
                    series_uid = excluded.series_uid, transfer_syntax = excluded.transfer_syntax,
                    modality = excluded.modality, patient_id = excluded.patient_id,
                    path = excluded.path, size = excluded.size, calling_ae = excluded.calling_ae,
                    called_ae = excluded.called_ae, peer = excluded.peer, source = excluded.source,
                    received_at = excluded.received_at,
                    times_received = instances.times_received + 1
                """,
                (
                    rec.sop_instance_uid,
                    rec.sop_class_uid,
                    rec.study_uid,
                    rec.series_uid,
                    rec.transfer_syntax,
                    rec.modality,
                    rec.patient_id,
                    str(rec.path),
                    rec.size,
                    rec.calling_ae,
                    rec.called_ae,
                    rec.peer,
                    rec.source,
                    now,
                ),
            )
            if header is not None:
                conn.execute(
                    "INSERT OR REPLACE INTO instance_headers (sop_instance_uid, header) "
                    "VALUES (?, ?)",
                    (rec.sop_instance_uid, header),
                )
            else:
                conn.execute(
                    "DELETE FROM instance_headers WHERE sop_instance_uid = ?",
                    (rec.sop_instance_uid,),
                )
            if not touch_study:
                return existed is None
            conn.execute(
                """
                INSERT INTO studies
                    (study_uid, first_received_at, last_received_at, calling_ae, source)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (study_uid) DO UPDATE SET
                    last_received_at = excluded.last_received_at,
                    calling_ae = excluded.calling_ae, source = excluded.source
                """,
                (rec.study_uid, now, now, rec.calling_ae, rec.source),
            )
        return existed is None

    def get(self, sop_instance_uid: str) -> InstanceRecord | None:
        row = (
            self.db.connection()
            .execute("SELECT * FROM instances WHERE sop_instance_uid = ?", (sop_instance_uid,))
            .fetchone()
        )
        return _record(row) if row else None

    def location(self, sop_instance_uid: str) -> tuple[str, str] | None:
        """(Study UID, Series UID) of an indexed instance, None when it is not indexed."""
        row = (
            self.db.connection()
            .execute(
                "SELECT study_uid, series_uid FROM instances WHERE sop_instance_uid = ?",
                (sop_instance_uid,),
            )
            .fetchone()
        )
        return (str(row[0]), str(row[1])) if row else None

    def version(self, sop_instance_uid: str) -> tuple[str, str, float] | None:
        """(Study UID, Series UID, received_at) of an indexed instance, None when not indexed."""
        row = (
            self.db.connection()
            .execute(
                "SELECT study_uid, series_uid, received_at FROM instances "
                "WHERE sop_instance_uid = ?",
                (sop_instance_uid,),
            )
            .fetchone()
        )
        return (str(row[0]), str(row[1]), float(row[2])) if row else None

    def header(self, sop_instance_uid: str) -> bytes | None:
        """The indexed header of an instance (see :meth:`add`), None when none was kept."""
        row = (
            self.db.connection()
            .execute(
                "SELECT header FROM instance_headers WHERE sop_instance_uid = ?",
                (sop_instance_uid,),
            )
            .fetchone()
        )
        return bytes(row[0]) if row else None

    def for_study(self, study_uid: str) -> list[InstanceRecord]:
        rows = (
            self.db.connection()
            .execute(
                "SELECT * FROM instances WHERE study_uid = ? ORDER BY series_uid, received_at",
                (study_uid,),
            )
            .fetchall()
        )
        return [_record(r) for r in rows]

    def last_received(self, study_uid: str) -> float | None:
        """When the study's latest instance other than the node's own results arrived."""
        row = (
            self.db.connection()
            .execute(
                "SELECT MAX(received_at) FROM instances WHERE study_uid = ? AND source != 'result'",
                (study_uid,),
            )
            .fetchone()
        )
        return float(row[0]) if row and row[0] is not None else None

    def count(self) -> int:
        return int(self.db.connection().execute("SELECT COUNT(*) FROM instances").fetchone()[0])

    # --- QIDO-RS look-ups (PS3.18 §10.6): exact, UID-list or wildcard matching on indexed keys ---

    def query_studies(
        self, match: QueryMatch, limit: int | None = None, offset: int = 0
    ) -> list[StudySummary]:
        """Studies with at least one instance matching ``match`` (Modality matches any series,
        i.e. ModalitiesInStudy); counts cover the whole study."""
        where, args = match.where(modality=False)
        having, h_args = (
            ("", []) if not match.modality else ("HAVING SUM(modality = ?) > 0", [match.modality])
        )
        rows = (
            self.db.connection()
            .execute(
                f"""
            SELECT study_uid, MIN(patient_id) AS patient_id,
                   GROUP_CONCAT(DISTINCT modality) AS modalities,
                   COUNT(DISTINCT series_uid) AS n_series, COUNT(*) AS n_instances,
                   MIN(path) AS path
            FROM instances {where} GROUP BY study_uid {having}
            ORDER BY MIN(received_at), study_uid LIMIT ? OFFSET ?
            """,
                [*args, *h_args, _limit(limit), max(offset, 0)],
            )
            .fetchall()
        )
        return [
            StudySummary(
                study_uid=r["study_uid"],
                patient_id=r["patient_id"],
                modalities=tuple(sorted(m for m in (r["modalities"] or "").split(",") if m)),
                series_count=r["n_series"],
                instance_count=r["n_instances"],
                sample_path=Path(r["path"]),
            )
            for r in rows
        ]

    def query_series(
        self, match: QueryMatch, limit: int | None = None, offset: int = 0
    ) -> list[SeriesSummary]:
        """Series with at least one instance matching ``match``."""
        where, args = match.where()
        rows = (
            self.db.connection()
            .execute(
                f"""
            SELECT study_uid, series_uid, MIN(modality) AS modality, MIN(patient_id) AS patient_id,
                   COUNT(*) AS n_instances, MIN(path) AS path
            FROM instances {where} GROUP BY study_uid, series_uid
            ORDER BY MIN(received_at), series_uid LIMIT ? OFFSET ?
            """,
                [*args, _limit(limit), max(offset, 0)],
            )
            .fetchall()
        )
        return [
            SeriesSummary(
                study_uid=r["study_uid"],
                series_uid=r["series_uid"],
                modality=r["modality"],
                patient_id=r["patient_id"],
                instance_count=r["n_instances"],
                sample_path=Path(r["path"]),
            )
            for r in rows
        ]

    def query_instances(
        self, match: QueryMatch, limit: int | None = None, offset: int = 0
    ) -> list[InstanceRecord]:
        """Instances matching ``match``, ordered by study, series and arrival."""
        where, args = match.where()
        rows = (
            self.db.connection()
            .execute(
                f"SELECT * FROM instances {where} "
                "ORDER BY study_uid, series_uid, received_at, sop_instance_uid LIMIT ? OFFSET ?",
                [*args, _limit(limit), max(offset, 0)],
            )
            .fetchall()
        )
        return [_record(r) for r in rows]


@dataclass(frozen=True)
class QueryMatch:
    """QIDO-RS matching keys the index can answer (PS3.18 §8.3.4.1): UIDs match a list of
    values, PatientID and Modality match a single value with ``*``/``?`` wildcards."""

    study_uids: tuple[str, ...] = ()
    series_uids: tuple[str, ...] = ()
    sop_instance_uids: tuple[str, ...] = ()
    sop_class_uids: tuple[str, ...] = ()
    modality: str = ""
    patient_id: str = ""

    def where(self, modality: bool = True) -> tuple[str, list[object]]:
        clauses: list[str] = []
        args: list[object] = []
        for column, values in (
            ("study_uid", self.study_uids),
            ("series_uid", self.series_uids),
            ("sop_instance_uid", self.sop_instance_uids),
            ("sop_class_uid", self.sop_class_uids),
        ):
            if values:
                clauses.append(f"{column} IN ({', '.join('?' * len(values))})")
                args.extend(values)
        for column, value in (("patient_id", self.patient_id), ("modality", self.modality)):
            if not value or (column == "modality" and not modality):
                continue
            if "*" in value or "?" in value:
                clauses.append(f"{column} GLOB ?")
                args.append(value.replace("[", "[[]"))
            else:
                clauses.append(f"{column} = ?")
                args.append(value)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), args


@dataclass(frozen=True)
class StudySummary:
    study_uid: str
    patient_id: str
    modalities: tuple[str, ...]
    series_count: int
    instance_count: int
    sample_path: Path


@dataclass(frozen=True)
class SeriesSummary:
    study_uid: str
    series_uid: str
    modality: str
    patient_id: str
    instance_count: int
    sample_path: Path


def _limit(limit: int | None) -> int:
    return -1 if limit is None or limit < 0 else limit


def _record(row: object) -> InstanceRecord:
    r = dict(row)  # type: ignore[call-overload]
    return InstanceRecord(
        sop_instance_uid=r["sop_instance_uid"],
        sop_class_uid=r["sop_class_uid"],
        study_uid=r["study_uid"],
        series_uid=r["series_uid"],
        transfer_syntax=r["transfer_syntax"],
        path=Path(r["path"]),
        size=r["size"],
        modality=r["modality"],
        patient_id=r["patient_id"],
        calling_ae=r["calling_ae"],
        called_ae=r["called_ae"],
        peer=r["peer"],
        source=r["source"],
        received_at=r["received_at"],
    )
