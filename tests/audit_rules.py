"""Checks of received audit messages: the RELAX NG schema of PS3.15 A.5.1 written for this
project (scp_node/audit/audit-message.rng, validated with lxml) plus, per EventID, the rules of
its table in PS3.15 A.5.3 (mandatory participants, role codes, object types)."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from lxml import etree

import scp_node.audit

SCHEMA = Path(scp_node.audit.__file__).parent / "audit-message.rng"


@cache
def _schema() -> etree.RelaxNG:
    return etree.RelaxNG(etree.parse(str(SCHEMA)))


@dataclass
class Participant:
    user_id: str
    requestor: bool
    roles: set[str]
    access_point: str


@dataclass
class Obj:
    object_id: str
    type_code: str
    role: str
    id_type: str
    query: str = ""
    sop_classes: dict[str, int] = field(default_factory=dict)


@dataclass
class Parsed:
    event_id: str
    action: str
    outcome: int
    event_types: set[str]
    description: str
    participants: list[Participant]
    objects: list[Obj]
    source_id: str

    def with_role(self, code: str) -> list[Participant]:
        return [p for p in self.participants if code in p.roles]

    def objects_of(self, id_type: str) -> list[Obj]:
        return [o for o in self.objects if o.id_type == id_type]


def parse(xml: str) -> Parsed:
    """Validate ``xml`` against the schema and the A.5.3 rules of its EventID; return it parsed."""
    doc = etree.fromstring(xml.encode("utf-8"))
    schema = _schema()
    assert schema.validate(doc), f"schema: {schema.error_log.last_error}\n{xml}"
    event = doc.find("EventIdentification")
    parsed = Parsed(
        event_id=event.find("EventID").get("csd-code"),
        action=event.get("EventActionCode", ""),
        outcome=int(event.get("EventOutcomeIndicator")),
        event_types={e.get("csd-code") for e in event.findall("EventTypeCode")},
        description=event.findtext("EventOutcomeDescription", ""),
        participants=[
            Participant(
                p.get("UserID"),
                p.get("UserIsRequestor") == "true",
                {r.get("csd-code") for r in p.findall("RoleIDCode")},
                p.get("NetworkAccessPointID", ""),
            )
            for p in doc.findall("ActiveParticipant")
        ],
        objects=[
            Obj(
                o.get("ParticipantObjectID"),
                o.get("ParticipantObjectTypeCode", ""),
                o.get("ParticipantObjectTypeCodeRole", ""),
                o.find("ParticipantObjectIDTypeCode").get("csd-code"),
                base64.b64decode(o.findtext("ParticipantObjectQuery", "")).decode("utf-8"),
                {s.get("UID"): int(s.get("NumberOfInstances")) for s in o.findall("SOPClass")},
            )
            for o in doc.findall("ParticipantObjectIdentification")
        ],
        source_id=doc.find("AuditSourceIdentification").get("AuditSourceID"),
    )
    RULES[parsed.event_id](parsed)
    return parsed


def _one(items: list, what: str) -> None:  # type: ignore[type-arg]
    assert len(items) == 1, f"expected exactly one {what}, found {len(items)}"


def _patient_and_studies(m: Parsed) -> None:
    """Patient (1): person, role patient, ID type RFC-3881 2; Study (1..N): system object,
    role report, ID type 110180 (A.5.3.3, A.5.3.4, A.5.3.6, A.5.3.7)."""
    patients = m.objects_of("2")
    _one(patients, "patient participant object")
    assert (patients[0].type_code, patients[0].role) == ("1", "1")
    studies = m.objects_of("110180")
    assert studies, "no study participant object"
    assert all((s.type_code, s.role) == ("2", "3") for s in studies)


def _source_and_destination(m: Parsed) -> None:
    _one(m.with_role("110153"), "Source (110153)")
    _one(m.with_role("110152"), "Destination (110152)")


def _application_activity(m: Parsed) -> None:  # A.5.3.1
    assert m.action == "E"
    assert m.event_types & {"110120", "110121"} and len(m.event_types) == 1
    _one(m.with_role("110150"), "Application (110150)")


def _begin_transferring(m: Parsed) -> None:  # A.5.3.3
    assert m.action == "E"
    _source_and_destination(m)
    _patient_and_studies(m)


def _export(m: Parsed) -> None:  # A.5.3.4
    assert m.action == "R"
    _one(m.with_role("110154"), "Destination Media (110154)")
    assert m.with_role("110153"), "the exporting process (110153)"
    _patient_and_studies(m)


def _accessed(m: Parsed) -> None:  # A.5.3.6
    assert m.action in {"C", "R", "U", "D"}
    assert 1 <= len(m.participants) <= 2 + 1
    _patient_and_studies(m)


def _transferred(m: Parsed) -> None:  # A.5.3.7
    assert m.action in {"C", "R", "U"}
    _source_and_destination(m)
    _patient_and_studies(m)
    for study in m.objects_of("110180"):
        assert study.sop_classes and all(n > 0 for n in study.sop_classes.values())


def _query(m: Parsed) -> None:  # A.5.3.10
    assert m.action == "E"
    _source_and_destination(m)
    queried = m.objects_of("110181")
    _one(queried, "SOP Queried (110181)")
    assert (queried[0].type_code, queried[0].role) == ("2", "3") and queried[0].query


def _security_alert(m: Parsed) -> None:  # A.5.3.11
    assert m.action == "E"
    assert m.event_types, "a Security Alert needs its EventTypeCode"
    assert any(not p.requestor or p.user_id for p in m.participants)


def _user_authentication(m: Parsed) -> None:  # A.5.3.12
    assert m.action == "E"
    assert m.event_types & {"110122", "110123"} and len(m.event_types) == 1
    assert not m.objects


RULES = {
    "110100": _application_activity,
    "110102": _begin_transferring,
    "110103": _accessed,
    "110104": _transferred,
    "110106": _export,
    "110112": _query,
    "110113": _security_alert,
    "110114": _user_authentication,
}
