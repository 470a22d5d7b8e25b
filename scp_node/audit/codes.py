"""Coded values of the DICOM audit messages (PS3.15 A.5.1.2, A.5.3; PS3.16 CID 400-406).

Each code is ``(code value, coding scheme, display name)``; the XML writes them as the
``CodedValueType`` of PS3.15 A.5.1 (``csd-code``, ``codeSystemName``, ``displayName``,
``originalText``).
"""

from __future__ import annotations

from typing import NamedTuple


class Code(NamedTuple):
    """One coded value (PS3.15 A.5.1 CodedValueType)."""

    value: str
    scheme: str
    meaning: str


def dcm(value: str, meaning: str) -> Code:
    return Code(value, "DCM", meaning)


# --- EventID (PS3.16 CID 400 "Audit Event ID") ---
APPLICATION_ACTIVITY = dcm("110100", "Application Activity")
BEGIN_TRANSFERRING = dcm("110102", "Begin Transferring DICOM Instances")
INSTANCES_ACCESSED = dcm("110103", "DICOM Instances Accessed")
INSTANCES_TRANSFERRED = dcm("110104", "DICOM Instances Transferred")
EXPORT = dcm("110106", "Export")
QUERY = dcm("110112", "Query")
SECURITY_ALERT = dcm("110113", "Security Alert")
USER_AUTHENTICATION = dcm("110114", "User Authentication")

# --- EventTypeCode (PS3.16 CID 401 "Audit Event Type Code") ---
APPLICATION_START = dcm("110120", "Application Start")
APPLICATION_STOP = dcm("110121", "Application Stop")
LOGIN = dcm("110122", "Login")
LOGOUT = dcm("110123", "Logout")
NODE_AUTHENTICATION = dcm("110126", "Node Authentication")
USE_OF_RESTRICTED_FUNCTION = dcm("110132", "Use of Restricted Function")

# --- RoleIDCode (PS3.16 CID 402 "Audit Active Participant Role ID Code") ---
APPLICATION = dcm("110150", "Application")
APPLICATION_LAUNCHER = dcm("110151", "Application Launcher")
DESTINATION = dcm("110152", "Destination Role ID")
SOURCE = dcm("110153", "Source Role ID")
DESTINATION_MEDIA = dcm("110154", "Destination Media")

# --- MediaType of the Export's media (PS3.16 CID 405 "Media Type Code") ---
URI_MEDIA = dcm("110037", "URI")

# --- ParticipantObjectIDTypeCode (PS3.15 A.5.1.2.4; PS3.16 CID 404) ---
PATIENT_NUMBER = Code("2", "RFC-3881", "Patient Number")
URI = Code("12", "RFC-3881", "URI")
STUDY_INSTANCE_UID = dcm("110180", "Study Instance UID")
SOP_CLASS_UID = dcm("110181", "SOP Class UID")
NODE_ID = dcm("110182", "Node ID")

# --- AuditSourceTypeCode (PS3.15 A.5.1.2.1) ---
APPLICATION_SERVER = Code("4", "DCM", "Application Server process tier in a multi-tier system")

# --- EventActionCode (PS3.15 A.5.1) ---
CREATE, READ, UPDATE, DELETE, EXECUTE = "C", "R", "U", "D", "E"
ACTION_CODES = frozenset({CREATE, READ, UPDATE, DELETE, EXECUTE})

# --- EventOutcomeIndicator (PS3.15 A.5.1) ---
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = 0, 4, 8, 12
OUTCOMES = frozenset({SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE})

# --- NetworkAccessPointTypeCode (PS3.15 A.5.1) ---
MACHINE_NAME, IP_ADDRESS, TELEPHONE, EMAIL, URI_ACCESS_POINT = "1", "2", "3", "4", "5"

# --- ParticipantObjectTypeCode and ...TypeCodeRole (PS3.15 A.5.1, A.5.1.2.2) ---
PERSON, SYSTEM_OBJECT, ORGANIZATION, OTHER = "1", "2", "3", "4"
ROLE_PATIENT, ROLE_LOCATION, ROLE_REPORT, ROLE_RESOURCE = "1", "2", "3", "4"
ROLE_SECURITY_RESOURCE, ROLE_DATA_REPOSITORY, ROLE_QUERY = "13", "17", "24"

#: Study Root Query/Retrieve Information Model - FIND (PS3.4 C.6.2): the SOP Class a QIDO-RS
#: search stands for in a Query message (PS3.15 A.5.3.10 "SOP Queried").
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
