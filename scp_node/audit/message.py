"""The audit message itself: PS3.15 A.5.1 ``AuditMessage`` as data, written as XML.

Element and attribute names, their order and their value sets follow the DICOM audit message
schema (PS3.15 A.5.1); ``audit-message.rng`` in this package is the same structure as a RELAX NG
schema a receiver can validate against.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scp_node.audit.codes import ACTION_CODES, OUTCOMES, Code


def _coded(parent: ET.Element, tag: str, code: Code) -> ET.Element:
    """A ``CodedValueType`` element (PS3.15 A.5.1): csd-code, codeSystemName, displayName and
    originalText (the display name again)."""
    return ET.SubElement(
        parent,
        tag,
        {
            "csd-code": code.value,
            "codeSystemName": code.scheme,
            "displayName": code.meaning,
            "originalText": code.meaning,
        },
    )


def event_time(moment: datetime | None = None) -> str:
    """EventDateTime: xsd:dateTime with its time zone, millisecond precision (PS3.15 A.5.2.5)."""
    moment = moment or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class ActiveParticipant:
    """A user or process taking part in the event (PS3.15 A.5.1, A.5.2.1-A.5.2.4)."""

    user_id: str
    requestor: bool
    roles: tuple[Code, ...] = ()
    alternative_user_id: str = ""
    user_name: str = ""
    access_point: str = ""
    access_point_type: str = ""  # codes.MACHINE_NAME / IP_ADDRESS / ... ("" = left out)
    media_type: Code | None = None


@dataclass(frozen=True)
class SopClassRef:
    """``SOPClass`` of a study participant: the class UID and how many of its instances."""

    uid: str
    count: int


@dataclass(frozen=True)
class ParticipantObject:
    """An object the event touched: patient, study, query, alert subject (PS3.15 A.5.1)."""

    object_id: str
    id_type: Code
    type_code: str = ""
    role: str = ""
    name: str = ""
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    description: str = ""
    accessions: tuple[str, ...] = ()
    sop_classes: tuple[SopClassRef, ...] = ()


@dataclass(frozen=True)
class AuditMessage:
    """One ``AuditMessage`` (PS3.15 A.5.1): one event, its participants, its source."""

    event_id: Code
    action: str
    outcome: int
    participants: tuple[ActiveParticipant, ...]
    source_id: str
    event_types: tuple[Code, ...] = ()
    outcome_description: str = ""
    enterprise_site_id: str = ""
    source_types: tuple[Code, ...] = ()
    objects: tuple[ParticipantObject, ...] = ()
    when: str = field(default_factory=event_time)

    def __post_init__(self) -> None:
        if self.action not in ACTION_CODES:
            raise ValueError(f"EventActionCode {self.action!r} is not one of {ACTION_CODES}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"EventOutcomeIndicator {self.outcome} is not one of {OUTCOMES}")
        if not self.participants:
            raise ValueError("an AuditMessage needs at least one ActiveParticipant")
        if not self.source_id:
            raise ValueError("AuditSourceID must not be empty")

    def element(self) -> ET.Element:
        """The message as an ElementTree element, in the schema's order."""
        root = ET.Element("AuditMessage")
        event = ET.SubElement(
            root,
            "EventIdentification",
            {
                "EventActionCode": self.action,
                "EventDateTime": self.when,
                "EventOutcomeIndicator": str(self.outcome),
            },
        )
        _coded(event, "EventID", self.event_id)
        for code in self.event_types:
            _coded(event, "EventTypeCode", code)
        if self.outcome_description:
            ET.SubElement(event, "EventOutcomeDescription").text = self.outcome_description
        for p in self.participants:
            _participant(root, p)
        attrs = {"AuditSourceID": self.source_id}
        if self.enterprise_site_id:
            attrs = {"AuditEnterpriseSiteID": self.enterprise_site_id, **attrs}
        source = ET.SubElement(root, "AuditSourceIdentification", attrs)
        for code in self.source_types:
            _coded(source, "AuditSourceTypeCode", code)
        for obj in self.objects:
            _object(root, obj)
        return root

    def to_xml(self) -> str:
        """The XML text (UTF-8, one line, with its declaration)."""
        body = ET.tostring(self.element(), encoding="unicode", short_empty_elements=True)
        return '<?xml version="1.0" encoding="UTF-8"?>' + body


def _participant(root: ET.Element, p: ActiveParticipant) -> None:
    attrs = {"UserID": p.user_id}
    if p.alternative_user_id:
        attrs["AlternativeUserID"] = p.alternative_user_id
    if p.user_name:
        attrs["UserName"] = p.user_name
    attrs["UserIsRequestor"] = "true" if p.requestor else "false"
    if p.access_point:
        attrs["NetworkAccessPointID"] = p.access_point
        if p.access_point_type:
            attrs["NetworkAccessPointTypeCode"] = p.access_point_type
    element = ET.SubElement(root, "ActiveParticipant", attrs)
    for role in p.roles:
        _coded(element, "RoleIDCode", role)
    if p.media_type is not None:
        media = ET.SubElement(element, "MediaIdentifier")
        _coded(media, "MediaType", p.media_type)


def _object(root: ET.Element, obj: ParticipantObject) -> None:
    attrs = {"ParticipantObjectID": obj.object_id}
    if obj.type_code:
        attrs["ParticipantObjectTypeCode"] = obj.type_code
    if obj.role:
        attrs["ParticipantObjectTypeCodeRole"] = obj.role
    element = ET.SubElement(root, "ParticipantObjectIdentification", attrs)
    _coded(element, "ParticipantObjectIDTypeCode", obj.id_type)
    if obj.name:
        ET.SubElement(element, "ParticipantObjectName").text = obj.name
    elif obj.query is not None:
        ET.SubElement(element, "ParticipantObjectQuery").text = base64.b64encode(obj.query).decode(
            "ascii"
        )
    for kind, value in obj.details:
        ET.SubElement(
            element,
            "ParticipantObjectDetail",
            {"type": kind, "value": base64.b64encode(value).decode("ascii")},
        )
    if obj.description:
        ET.SubElement(element, "ParticipantObjectDescription").text = obj.description
    for number in obj.accessions:
        ET.SubElement(element, "Accession", {"Number": number})
    for ref in obj.sop_classes:
        ET.SubElement(element, "SOPClass", {"UID": ref.uid, "NumberOfInstances": str(ref.count)})
