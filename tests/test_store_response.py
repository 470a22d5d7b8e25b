"""The directly encoded Success C-STORE-RSP is byte for byte pynetdicom's (issue 15)."""

from __future__ import annotations

import copy
from typing import cast

import pytest
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts
from pynetdicom.dimse_messages import C_STORE_RSP
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from scp_node.ingest.store_response import clone_contexts, encode_c_store_rsp


def response(message_id: int, sop_class: str, sop_instance: str | None) -> C_STORE:
    rsp = C_STORE()
    rsp.MessageID = message_id
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.AffectedSOPInstanceUID = sop_instance
    rsp.Status = 0x0000
    return rsp


def pynetdicom_bytes(rsp: C_STORE) -> bytes:
    message = C_STORE_RSP()
    message.primitive_to_message(rsp)
    return cast(bytes, encode(message.command_set, True, True))


@pytest.mark.parametrize(
    ("message_id", "sop_class", "sop_instance"),
    [
        (1, "1.2.840.10008.5.1.4.1.1.4", "1.2.3.4.5.6.7"),  # odd and odd length
        (65535, "1.2.840.10008.5.1.4.1.1.7", "1.2.826.0.1.3680043.8.498.12"),  # even
        (7, "1.2.840.10008.5.1.4.1.1.88.33", None),
    ],
)
def test_success_response_matches_pynetdicom(
    message_id: int, sop_class: str, sop_instance: str | None
) -> None:
    rsp = response(message_id, sop_class, sop_instance)
    assert encode_c_store_rsp(rsp) == pynetdicom_bytes(rsp)


def test_other_responses_are_left_to_pynetdicom() -> None:
    failed = response(1, "1.2.840.10008.5.1.4.1.1.4", "1.2.3")
    failed.Status = 0xA700
    assert encode_c_store_rsp(failed) is None
    commented = response(1, "1.2.840.10008.5.1.4.1.1.4", "1.2.3")
    commented.ErrorComment = "x"
    assert encode_c_store_rsp(commented) is None
    request = C_STORE()
    request.MessageID = 1
    assert encode_c_store_rsp(request) is None


def test_context_clones_equal_deep_copies_and_are_independent() -> None:
    ae = AE()
    for context in AllStoragePresentationContexts[:20]:
        ae.add_supported_context(
            context.abstract_syntax, [ExplicitVRLittleEndian, "1.2.840.10008.1.2"]
        )
    ae.add_supported_context(Verification, scu_role=True, scp_role=True)
    original = ae.supported_contexts
    deep, cheap = copy.deepcopy(original), clone_contexts(original)
    assert [vars(c) for c in cheap] == [vars(c) for c in deep]
    cheap[0]._transfer_syntax.append("1.2.3")
    cheap[0].context_id = 99
    assert "1.2.3" not in original[0].transfer_syntax and original[0].context_id != 99
    assert clone_contexts({"a": [1]}) == {"a": [1]}
