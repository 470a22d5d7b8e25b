"""QIDO-RS searches (PS3.18 §10.6) answered from the instance index.

Matching runs in SQL on the keys the index holds (StudyInstanceUID, SeriesInstanceUID,
SOPInstanceUID, SOPClassUID, Modality / ModalitiesInStudy, PatientID); the other returned
attributes are read from one stored instance's header per result. Keys the node cannot match on
are ignored and reported in a ``Warning: 299`` header (PS3.18 §8.3.4.3).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from scp_node import audit
from scp_node.store.index import InstanceIndex, InstanceRecord, QueryMatch
from scp_node.web.dicom_json import (
    copy_fields,
    encode,
    field_name,
    parse_field,
    retrieve_url,
    stored_header,
    without_bulk_data,
)

MAX_LIMIT = 1000
#: Largest ``offset`` accepted (SQLite integers are 64-bit; no index holds this many results).
MAX_OFFSET = 10**9
#: Most values in one UID-list match (SQLite allows 32766 bound parameters per statement).
MAX_UID_VALUES = 1000
#: Longest single matching value (PatientID, Modality; PS3.5 allows 64 characters for LO).
MAX_VALUE_CHARS = 256


class Level(Enum):
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


def _tags(*keywords: str) -> tuple[int, ...]:
    return tuple(t for t in (parse_field(k) for k in keywords) if t is not None)


#: Attributes returned by default per level (PS3.18 §10.6.3.3, Tables 10.6.3-3 to -5).
DEFAULT_FIELDS: dict[Level, tuple[int, ...]] = {
    Level.STUDY: _tags(
        "SpecificCharacterSet",
        "StudyDate",
        "StudyTime",
        "AccessionNumber",
        "ReferringPhysicianName",
        "TimezoneOffsetFromUTC",
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyInstanceUID",
        "StudyID",
        "StudyDescription",
    ),
    Level.SERIES: _tags(
        "SpecificCharacterSet",
        "Modality",
        "TimezoneOffsetFromUTC",
        "SeriesDescription",
        "SeriesInstanceUID",
        "SeriesNumber",
        "PerformedProcedureStepStartDate",
        "PerformedProcedureStepStartTime",
        "StudyInstanceUID",
    ),
    Level.INSTANCE: _tags(
        "SpecificCharacterSet",
        "SOPClassUID",
        "SOPInstanceUID",
        "TimezoneOffsetFromUTC",
        "InstanceNumber",
        "Rows",
        "Columns",
        "BitsAllocated",
        "NumberOfFrames",
        "StudyInstanceUID",
        "SeriesInstanceUID",
        "Modality",
    ),
}

_MATCH_KEYS = {
    "StudyInstanceUID": "study_uids",
    "SeriesInstanceUID": "series_uids",
    "SOPInstanceUID": "sop_instance_uids",
    "SOPClassUID": "sop_class_uids",
    "Modality": "modality",
    "ModalitiesInStudy": "modality",
    "PatientID": "patient_id",
}


class BadQuery(ValueError):
    """A query parameter the node cannot even parse (answered 400)."""


@dataclass
class Query:
    """A parsed QIDO-RS request: what to match, paging, extra fields, and what was ignored."""

    match: QueryMatch = field(default_factory=QueryMatch)
    limit: int = MAX_LIMIT
    offset: int = 0
    include: set[int] = field(default_factory=set)
    include_all: bool = False
    ignored: list[str] = field(default_factory=list)


def parse_query(items: Iterable[tuple[str, str]], path_match: QueryMatch) -> Query:
    """Parse query parameters (PS3.18 §8.3.4); ``path_match`` holds the UIDs from the URL."""
    query = Query(match=path_match)
    for key, value in items:
        if key == "limit":
            query.limit = min(_bounded(key, value, 10**9), MAX_LIMIT)
        elif key == "offset":
            query.offset = _bounded(key, value, MAX_OFFSET)
        elif key == "includefield":
            for name in (v for v in value.split(",") if v.strip()):
                if name.strip() == "all":
                    query.include_all = True
                elif (tag := parse_field(name)) is not None:
                    query.include.add(tag)
                else:
                    raise BadQuery(f"includefield {name!r} is not a DICOM keyword or tag")
        elif key == "fuzzymatching":
            if value.strip().lower() == "true":
                query.ignored.append("fuzzymatching")
        else:
            _add_match(query, key, value)
    return query


def _bounded(key: str, value: str, maximum: int) -> int:
    """``value`` as an integer from 0 to ``maximum`` (PS3.18 §8.3.4.4), else :class:`BadQuery`."""
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        if text.startswith("-") and text[1:].isdigit():
            raise BadQuery(f"{key} must not be negative")
        raise BadQuery(f"{key} must be an integer from 0 to {maximum}")
    number = int(text)
    if number > maximum:
        raise BadQuery(f"{key} must be an integer from 0 to {maximum}")
    return number


def _add_match(query: Query, key: str, value: str) -> None:
    tag = parse_field(key)
    name = field_name(tag) if tag is not None else key
    attr = _MATCH_KEYS.get(name)
    if attr is None:
        if tag is None:
            raise BadQuery(f"query key {key!r} is not a DICOM keyword or tag")
        query.ignored.append(name)
        return
    if len(value) > MAX_VALUE_CHARS * MAX_UID_VALUES:
        raise BadQuery(f"value of {name} is too long")
    if attr.endswith("_uids"):
        values = tuple(v.strip() for v in value.replace("\\", ",").split(",") if v.strip())
        if len(values) > MAX_UID_VALUES:
            raise BadQuery(f"{name} lists more than {MAX_UID_VALUES} UIDs")
        current: tuple[str, ...] = getattr(query.match, attr)
        if current:  # a UID from the URL path: the query can only narrow it
            values = tuple(v for v in current if v in values) or ("",)
        changes: dict[str, Any] = {attr: values}
        query.match = replace(query.match, **changes)
    else:
        if len(value.strip()) > MAX_VALUE_CHARS:
            raise BadQuery(f"value of {name} is longer than {MAX_VALUE_CHARS} characters")
        query.match = replace(query.match, **{attr: value.strip()})  # type: ignore[arg-type]


def search(index: InstanceIndex, level: Level, query: Query, base: str) -> list[dict[str, Any]]:
    """Run ``query`` at ``level``; one DICOM JSON object per match (blocking: call in a thread)."""
    audit.web_query(level)  # PS3.15 A.5.3.10 Query
    if level is Level.STUDY:
        studies = index.query_studies(query.match, query.limit, query.offset)
        results = []
        for study in studies:
            ds = _fields(index, study.sample_path, level, query)
            ds.StudyInstanceUID = study.study_uid
            ds.PatientID = study.patient_id
            ds.ModalitiesInStudy = list(study.modalities)
            ds.NumberOfStudyRelatedSeries = study.series_count
            ds.NumberOfStudyRelatedInstances = study.instance_count
            ds.InstanceAvailability = "ONLINE"
            ds.RetrieveURL = retrieve_url(base, study.study_uid)
            results.append(encode(ds))
        return results
    if level is Level.SERIES:
        results = []
        for series in index.query_series(query.match, query.limit, query.offset):
            ds = _fields(index, series.sample_path, level, query)
            ds.StudyInstanceUID = series.study_uid
            ds.SeriesInstanceUID = series.series_uid
            ds.Modality = series.modality
            ds.NumberOfSeriesRelatedInstances = series.instance_count
            ds.InstanceAvailability = "ONLINE"
            ds.RetrieveURL = retrieve_url(base, series.study_uid, series.series_uid)
            results.append(encode(ds))
        return results
    return [
        _instance(index, rec, query, base)
        for rec in index.query_instances(query.match, query.limit, query.offset)
    ]


def _instance(index: InstanceIndex, rec: InstanceRecord, query: Query, base: str) -> dict[str, Any]:
    ds = _fields(index, rec, Level.INSTANCE, query)
    ds.StudyInstanceUID = rec.study_uid
    ds.SeriesInstanceUID = rec.series_uid
    ds.SOPInstanceUID = rec.sop_instance_uid
    ds.SOPClassUID = rec.sop_class_uid
    ds.AvailableTransferSyntaxUID = rec.transfer_syntax
    ds.InstanceAvailability = "ONLINE"
    ds.RetrieveURL = retrieve_url(base, rec.study_uid, rec.series_uid, rec.sop_instance_uid)
    return encode(ds)


def _fields(
    index: InstanceIndex, sample: InstanceRecord | Path, level: Level, query: Query
) -> Dataset:
    """The level's default attributes plus ``includefield`` ones, from an instance's indexed
    header (``sample``: its record, or its spool path, whose name is its SOP Instance UID)."""
    out = Dataset()
    try:
        rec = sample if isinstance(sample, InstanceRecord) else index.get(sample.stem)
        if rec is None:
            return out
        header = stored_header(index, rec)
    except Exception:  # gone (retention), unreadable or deflated without one: index values only
        return out
    if query.include_all:
        return without_bulk_data(header)
    copy_fields(header, out, (*DEFAULT_FIELDS[level], *sorted(query.include)))
    return out
