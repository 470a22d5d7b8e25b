"""Every coded concept the report uses, in one place (PS3.16: SCT, DCM, UCUM, private).

Standard codes are used wherever one exists (disc levels, yes/no, comment, units). The uncertainty
terms and the LSTV flags have no standard concept, so they live in the private coding scheme
``99SCPNODE`` (a "99" designator is a local scheme, PS3.16 §8.2), declared in the SR's Coding
Scheme Identification Sequence (PS3.3 C.12.1.1.4).
"""

from __future__ import annotations

from highdicom.coding_schemes import CodingSchemeIdentificationItem
from pydicom.sr.coding import Code

PRIVATE_SCHEME = "99SCPNODE"
PRIVATE_SCHEME_NAME = "scp-node LSTV screen concepts"
PRIVATE_SCHEME_VERSION = "1"


def _private(value: str, meaning: str) -> Code:
    return Code(value, PRIVATE_SCHEME, meaning, scheme_version=PRIVATE_SCHEME_VERSION)


def private_coding_scheme() -> CodingSchemeIdentificationItem:
    """The Coding Scheme Identification item that declares ``99SCPNODE`` (PS3.3 C.12.1.1.4)."""
    return CodingSchemeIdentificationItem(
        designator=PRIVATE_SCHEME,
        name=PRIVATE_SCHEME_NAME,
        version=PRIVATE_SCHEME_VERSION,
        responsible_organization="scp-node project",
    )


# --- Document (TID 1500) -------------------------------------------------------------------------
#: Procedure reported (TID 1500 row 4): SCT "Magnetic resonance imaging" (CID 100).
PROCEDURE_MR = Code("113091000", "SCT", "Magnetic resonance imaging")
#: Finding site of the study-level group.
LUMBOSACRAL_SPINE = Code("297173004", "SCT", "Lumbosacral region of spine")

# --- Disc levels: SCT "Level of Lx/Ly intervertebral disc" (finding site of each group) ----------
DISC_LEVEL_SITES: dict[str, Code] = {
    "L1-L2": Code("243920003", "SCT", "Level of L1/L2 intervertebral disc"),
    "L2-L3": Code("243921004", "SCT", "Level of L2/L3 intervertebral disc"),
    "L3-L4": Code("243922006", "SCT", "Level of L3/L4 intervertebral disc"),
    "L4-L5": Code("243923001", "SCT", "Level of L4/L5 intervertebral disc"),
    "L5-S1": Code("243927000", "SCT", "Level of L5/S1 intervertebral disc"),
}

# --- Values (SCT) --------------------------------------------------------------------------------
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")
#: The value of "LSTV suspected" when the screen is not assessable (SCT qualifier value).
INDETERMINATE = Code("82334004", "SCT", "Indeterminate")

# --- Text (DCM) ----------------------------------------------------------------------------------
COMMENT = Code("121106", "DCM", "Comment")

# --- Units (UCUM, PS3.16 CID 7181 / UCUM) --------------------------------------------------------
UNIT_ONE = Code("1", "UCUM", "no units")
UNIT_BIT = Code("bit", "UCUM", "bit")
UNIT_PERCENT = Code("%", "UCUM", "percent")

# --- Private concepts (99SCPNODE) ----------------------------------------------------------------
DISC_LOCALIZATION = _private("DISCLOC", "Disc localization")
LSTV_SCREEN = _private("LSTVSCREEN", "LSTV screen")
PEAK_CONFIDENCE = _private("PEAKCONF", "Peak confidence")
ENTROPY = _private("ENTROPY", "Entropy")
SPATIAL_ENTROPY = _private("SPATENTROPY", "Spatial entropy")
PREDICTIVE_ENTROPY = _private("PREDENTROPY", "Predictive entropy")
MUTUAL_INFORMATION = _private("MUTUALINFO", "Mutual information")
LSTV_SCORE = _private("LSTVSCORE", "LSTV score")
LSTV_THRESHOLD = _private("LSTVTHRESH", "LSTV threshold")
#: Mobile-disc signal at L5-S1 and 15-65 mm below it, relative to the study's L1-L2..L3-L4 discs.
JUNCTION_DISC_SIGNAL = _private("L5S1DISC", "L5-S1 disc signal")
BELOW_DISC_SIGNAL = _private("BELOWDISC", "Disc signal below L5-S1")
#: The L4-L5 -> L5-S1 distance over the median distance between the levels above it.
JUNCTION_GAP_RATIO = _private("L5S1GAPRATIO", "L4-L5 to L5-S1 distance ratio")
LSTV_SUSPECTED = _private("LSTVSUSPECTED", "LSTV suspected")
NEEDS_REVIEW = _private("NEEDSREVIEW", "Needs review")
SCREEN_APPLICABLE = _private("APPLICABLE", "Screen applicable")
#: Yes/No on every applicable result: No = the model ran but the screen cannot be trusted here.
SCREEN_ASSESSABLE = _private("ASSESSABLE", "Screen assessable")

#: TID 4019 Algorithm Parameters text of the study-level group naming the threshold's origin.
CALIBRATION_PARAMETER_PREFIX = "threshold calibration: "


def yes_no(flag: bool) -> Code:
    return YES if flag else NO
