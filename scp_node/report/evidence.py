"""Source instances as SR evidence: header-only copies of one study (PS3.3 C.17.2).

highdicom copies the Patient and General Study attributes from the first evidence dataset; this
module makes sure they exist (Type 2: present, maybe empty) and lists the extra Patient/Study
attributes the node copies as well, so that ``dcentvfy`` finds the SR and its sources consistent.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydicom.dataset import Dataset

#: Type 2 attributes highdicom reads from evidence[0] (Patient, General Study modules).
_REQUIRED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)

#: Further Patient / Patient Study / General Study attributes copied when the source has them.
EXTRA_PATIENT_STUDY = (
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "OtherPatientIDsSequence",
    "PatientBirthTime",
    "EthnicGroup",
    "PatientComments",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "QualityControlSubject",
    "StudyDescription",
    "IssuerOfAccessionNumberSequence",
    "ProcedureCodeSequence",
    "PhysiciansOfRecord",
    "NameOfPhysiciansReadingStudy",
    "ReferencedStudySequence",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "AdmittingDiagnosesDescription",
    "AdditionalPatientHistory",
    "PatientSexNeutered",
    "Occupation",
)

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def header_copy(ds: Dataset) -> Dataset:
    """A copy of ``ds`` without pixel data, with the Type 2 Patient/Study attributes present."""
    copy = Dataset()
    for elem in ds:
        if elem.keyword not in _PIXEL_KEYWORDS:
            copy.add(elem)
    if hasattr(ds, "file_meta"):
        copy.file_meta = ds.file_meta
    for keyword in _REQUIRED_TYPE2:
        if keyword not in copy:
            setattr(copy, keyword, "")
    return copy


def study_evidence(study_uid: str, sources: Sequence[Dataset]) -> list[Dataset]:
    """Header copies of ``sources``; all must belong to ``study_uid`` (one SR is one study)."""
    if not sources:
        raise ValueError(
            "an SR needs at least one source instance (patient and study come from it)"
        )
    evidence = []
    for ds in sources:
        if str(ds.get("StudyInstanceUID", "")) != study_uid:
            raise ValueError(f"source {ds.get('SOPInstanceUID', '?')} is not in study {study_uid}")
        evidence.append(header_copy(ds))
    return evidence


def copy_patient_study(target: Dataset, source: Dataset) -> None:
    """Copy :data:`EXTRA_PATIENT_STUDY` and the character set from ``source`` into ``target``."""
    for keyword in EXTRA_PATIENT_STUDY:
        if keyword in source:
            target[keyword] = source[keyword]
    if "SpecificCharacterSet" in source:
        target.SpecificCharacterSet = source.SpecificCharacterSet


def analysed_series_first(evidence: Sequence[Dataset], series_uid: str) -> list[Dataset]:
    """The evidence with the analysed series' instances first: highdicom takes the SR's Patient
    and General Study attributes from the first evidence dataset (PS3.3 C.7.1.1, C.7.2.1), so
    they describe the images the result is about, not whatever instance came first."""
    return sorted(evidence, key=lambda ds: str(ds.get("SeriesInstanceUID", "")) != series_uid)


def patient_id_conflict(evidence: Sequence[Dataset]) -> str:
    """A warning (no identifiers in it) when the study's instances carry different Patient IDs;
    "" when they agree. The node never merges them."""
    ids = {str(ds.get("PatientID", "")) for ds in evidence}
    if len(ids) <= 1:
        return ""
    return (
        f"the study's instances carry {len(ids)} different Patient IDs; the report's patient "
        "attributes come from the analysed series"
    )
