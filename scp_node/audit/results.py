"""Audit messages for results the outbox sent (PS3.15 A.5.3.7 DICOM Instances Transferred and
A.5.3.4 Export, EventID 110106): one pair per study, destination and batch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from scp_node.audit import codes as c
from scp_node.audit import events
from scp_node.audit.message import AuditMessage, SopClassRef

#: SOP Class of Storage Commitment reports, which travel through the outbox too (not audited
#: here: they carry no instances).
COMMITMENT_CLASS = "1.2.840.10008.1.20.1"


def _patient_id(path: Any) -> str:
    """Patient ID (0010,0020) of a result file (its header only)."""
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
        return str(ds.get("PatientID", ""))
    except Exception:
        return ""


def destination_participant(name: str, dest: Any) -> events.ActiveParticipant:
    """The destination as a participant: AE title and host (DIMSE) or URL (STOW-RS)."""
    if dest is None:
        return events.peer(name, "", False, c.DESTINATION)
    if getattr(dest, "kind", "dimse") == "stow":
        return events.ActiveParticipant(
            user_id=dest.url or name,
            requestor=False,
            roles=(c.DESTINATION,),
            access_point=dest.url,
            access_point_type=c.URI_ACCESS_POINT if dest.url else "",
        )
    return events.ActiveParticipant(
        user_id=dest.ae_title,
        alternative_user_id=f"AETITLES={dest.ae_title}",
        requestor=False,
        roles=(c.DESTINATION,),
        access_point=dest.host,
        access_point_type=c.MACHINE_NAME,
    )


def result_messages(
    local: events.Local,
    name: str,
    dest: Any,
    rows: Sequence[Any],
    outcomes: Sequence[Any],
    max_attempts: int,
) -> Iterator[tuple[str, AuditMessage]]:
    """(event, message) pairs for the delivered and dead-lettered rows of one batch."""
    groups: dict[tuple[str, bool], list[Any]] = defaultdict(list)
    errors: dict[tuple[str, bool], str] = {}
    for row, outcome in zip(rows, outcomes, strict=True):
        if row.sop_class_uid == COMMITMENT_CLASS:
            continue
        if outcome.ok:
            groups[(row.study_uid, True)].append(row)
        elif row.attempts >= max_attempts:
            groups[(row.study_uid, False)].append(row)
            errors[(row.study_uid, False)] = str(outcome.error)[:200]
    target = destination_participant(name, dest)
    source = local.process(True, c.SOURCE)
    for (study_uid, ok), group in groups.items():
        counts: dict[str, int] = defaultdict(int)
        for row in group:
            counts[row.sop_class_uid] += 1
        refs = tuple(SopClassRef(uid, n) for uid, n in sorted(counts.items()))
        study = events.StudyRef(study_uid, _patient_id(group[0].path), refs)
        outcome = c.SUCCESS if ok else c.SERIOUS_FAILURE
        text = "" if ok else f"dead letter after {max_attempts} attempts: {errors[(study_uid, ok)]}"
        yield (
            "transferred",
            events.instances_transferred(local, source, target, study, c.CREATE, outcome, text),
        )
        media = replace(target, roles=(c.DESTINATION_MEDIA,), media_type=c.URI_MEDIA)
        yield "export", events.export(local, media, study, outcome, text)
