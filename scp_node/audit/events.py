"""Builders of the audit messages the node emits (PS3.15 A.5.3): pure functions, no I/O.

Each takes the node's own identity (:class:`Local`), the other participants and the objects, and
returns an :class:`AuditMessage` shaped as its table in PS3.15 A.5.3 asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from scp_node.audit import codes as c
from scp_node.audit.message import ActiveParticipant, AuditMessage, ParticipantObject, SopClassRef


@dataclass(frozen=True)
class Local:
    """Who reports: the node's AE title, its AuditSourceID and AuditEnterpriseSiteID."""

    ae_title: str
    source_id: str
    site_id: str = ""
    app_name: str = "scp-node"
    host: str = ""

    def process(self, requestor: bool, *roles: c.Code) -> ActiveParticipant:
        """The node's DICOM process as a participant (UserID = its AE title, PS3.15 A.5.2.1;
        AlternativeUserID ``AETITLES=`` form of A.5.2.2)."""
        return ActiveParticipant(
            user_id=self.ae_title,
            alternative_user_id=f"AETITLES={self.ae_title}",
            user_name=self.app_name,
            requestor=requestor,
            roles=roles,
            access_point=self.host,
            access_point_type=c.MACHINE_NAME if self.host else "",
        )

    def message(self, **fields: object) -> AuditMessage:
        return AuditMessage(
            source_id=self.source_id,
            enterprise_site_id=self.site_id,
            source_types=(c.APPLICATION_SERVER,),
            **fields,  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class StudyRef:
    """A study as the objects of a transfer or access message: its patient and its classes."""

    study_uid: str
    patient_id: str
    sop_classes: tuple[SopClassRef, ...] = ()
    accession: str = ""

    def objects(self, description: str = "") -> tuple[ParticipantObject, ...]:
        """Study (110180, system object, role Report) and Patient (person, role Patient)."""
        study = ParticipantObject(
            object_id=self.study_uid,
            id_type=c.STUDY_INSTANCE_UID,
            type_code=c.SYSTEM_OBJECT,
            role=c.ROLE_REPORT,
            description=description,
            accessions=(self.accession,) if self.accession else (),
            sop_classes=self.sop_classes,
        )
        return (study, patient(self.patient_id))


def patient(patient_id: str) -> ParticipantObject:
    """The Patient participant object (PS3.15 A.5.3: type 1 Person, role 1 Patient, ID type
    RFC-3881 "2" Patient Number)."""
    return ParticipantObject(
        object_id=patient_id,
        id_type=c.PATIENT_NUMBER,
        type_code=c.PERSON,
        role=c.ROLE_PATIENT,
    )


def peer(
    user_id: str, address: str, requestor: bool, *roles: c.Code, alt: str = ""
) -> ActiveParticipant:
    """A remote participant known by its AE title (or URL) and IP address."""
    return ActiveParticipant(
        user_id=user_id or address or "unknown",
        alternative_user_id=alt,
        requestor=requestor,
        roles=roles,
        access_point=address,
        access_point_type=c.IP_ADDRESS if address else "",
    )


def application_activity(local: Local, started: bool, outcome: int = c.SUCCESS) -> AuditMessage:
    """Application Activity (PS3.15 A.5.3.1): the node started or stopped."""
    return local.message(
        event_id=c.APPLICATION_ACTIVITY,
        action=c.EXECUTE,
        outcome=outcome,
        event_types=(c.APPLICATION_START if started else c.APPLICATION_STOP,),
        participants=(local.process(False, c.APPLICATION),),
    )


def instances_transferred(
    local: Local,
    source: ActiveParticipant,
    destination: ActiveParticipant,
    study: StudyRef,
    action: str = c.CREATE,
    outcome: int = c.SUCCESS,
    description: str = "",
) -> AuditMessage:
    """DICOM Instances Transferred (PS3.15 A.5.3.7): one study of one patient, from ``source``
    (role 110153) to ``destination`` (role 110152)."""
    return local.message(
        event_id=c.INSTANCES_TRANSFERRED,
        action=action,
        outcome=outcome,
        outcome_description=description,
        participants=(source, destination),
        objects=study.objects(),
    )


def begin_transferring(
    local: Local,
    source: ActiveParticipant,
    destination: ActiveParticipant,
    study: StudyRef,
) -> AuditMessage:
    """Begin Transferring DICOM Instances (PS3.15 A.5.3.3): a WADO-RS retrieve starts."""
    return local.message(
        event_id=c.BEGIN_TRANSFERRING,
        action=c.EXECUTE,
        outcome=c.SUCCESS,
        participants=(source, destination),
        objects=study.objects(),
    )


def instances_accessed(
    local: Local, user: ActiveParticipant, study: StudyRef, description: str = ""
) -> AuditMessage:
    """DICOM Instances Accessed (PS3.15 A.5.3.6), action Read: WADO-RS metadata was read."""
    return local.message(
        event_id=c.INSTANCES_ACCESSED,
        action=c.READ,
        outcome=c.SUCCESS,
        participants=(user, local.process(False)),
        objects=study.objects(description),
    )


def query(
    local: Local,
    requestor: ActiveParticipant,
    responder: ActiveParticipant,
    query_text: bytes,
    description: str,
    patient_id: str = "",
    outcome: int = c.SUCCESS,
) -> AuditMessage:
    """Query (PS3.15 A.5.3.10): the SOP Queried object carries the query (base64) and the
    Study Root C-FIND SOP Class it stands for; a Patient object when the query names one."""
    sop = ParticipantObject(
        object_id=c.STUDY_ROOT_FIND,
        id_type=c.SOP_CLASS_UID,
        type_code=c.SYSTEM_OBJECT,
        role=c.ROLE_REPORT,
        query=query_text,
        description=description,
    )
    objects = (sop, patient(patient_id)) if patient_id else (sop,)
    return local.message(
        event_id=c.QUERY,
        action=c.EXECUTE,
        outcome=outcome,
        participants=(requestor, responder),
        objects=objects,
    )


def security_alert(
    local: Local,
    event_type: c.Code,
    description: str,
    performer: ActiveParticipant | None = None,
    subject: str = "",
    outcome: int = c.MINOR_FAILURE,
) -> AuditMessage:
    """Security Alert (PS3.15 A.5.3.11). The node is the reporting process; ``performer`` the
    peer that caused it; ``subject`` (a URI) the alert subject. A refused attempt is a minor
    failure: the mitigation (refusal) worked."""
    participants = [local.process(False)]
    if performer is not None:
        participants.append(performer)
    objects: tuple[ParticipantObject, ...] = ()
    if subject:
        objects = (
            ParticipantObject(
                object_id=subject,
                id_type=c.URI,
                type_code=c.SYSTEM_OBJECT,
                role=c.ROLE_SECURITY_RESOURCE,
                details=(("Alert Description", description.encode("utf-8")),),
            ),
        )
    return local.message(
        event_id=c.SECURITY_ALERT,
        action=c.EXECUTE,
        outcome=outcome,
        event_types=(event_type,),
        outcome_description=description,
        participants=tuple(participants),
        objects=objects,
    )


def user_authentication(
    local: Local,
    user: ActiveParticipant,
    logout: bool = False,
    outcome: int = c.SUCCESS,
    description: str = "",
) -> AuditMessage:
    """User Authentication (PS3.15 A.5.3.12): a person signed in (110122) or out (110123);
    the node is the authenticating system."""
    return local.message(
        event_id=c.USER_AUTHENTICATION,
        action=c.EXECUTE,
        outcome=outcome,
        outcome_description=description,
        event_types=(c.LOGOUT if logout else c.LOGIN,),
        participants=(user, local.process(False)),
    )


def export(
    local: Local,
    destination: ActiveParticipant,
    study: StudyRef,
    outcome: int = c.SUCCESS,
    description: str = "",
) -> AuditMessage:
    """Export (PS3.15 A.5.3.4, EventID 110106, action Read): results left the node's control
    for ``destination`` (role 110154 Destination Media); the node (110153) did it."""
    return local.message(
        event_id=c.EXPORT,
        action=c.READ,
        outcome=outcome,
        outcome_description=description,
        participants=(local.process(True, c.SOURCE), destination),
        objects=study.objects(),
    )
