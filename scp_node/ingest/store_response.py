"""C-STORE-RSP without pydicom: the Success response encoded directly (PS3.7 §9.3.1.2, E.1).

pynetdicom builds every response as a pydicom data set, validates each value and encodes the
command set twice (once to learn its group length): about a fifth of the node's Python time per
received instance (py-spy, issue 15). A Success C-STORE-RSP is six fixed elements; this module
encodes them (Implicit VR Little Endian, the command set's encoding, PS3.7 §6.3.1) byte for byte
as pynetdicom would, and sends them as one command PDV. Any other response (a failure status,
an Error Comment, a DIMSE-sent handler bound) goes through pynetdicom unchanged.
"""

from __future__ import annotations

import copy
import logging
import struct
from collections.abc import Callable
from typing import Any

import pynetdicom.transport
from pynetdicom import _config, evt
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA
from pynetdicom.presentation import PresentationContext

#: PDV message control header: command, last fragment (PS3.8 E.2)
LAST_COMMAND_FRAGMENT = b"\x03"
COMMAND_FIELD_C_STORE_RSP = 0x8001
NO_DATA_SET = 0x0101


def _uid(element: int, value: object) -> bytes:
    raw = str(value).encode("ascii")
    if len(raw) % 2:
        raw += b"\0"
    return struct.pack("<HHI", 0, element, len(raw)) + raw


def _us(element: int, value: int) -> bytes:
    return struct.pack("<HHIH", 0, element, 2, value)


def encode_c_store_rsp(primitive: C_STORE) -> bytes | None:
    """The command set of a Success C-STORE-RSP ``primitive``, or None when it is not one this
    module encodes (then pynetdicom does)."""
    if (
        type(primitive) is not C_STORE
        or primitive.MessageIDBeingRespondedTo is None
        or primitive.Status != 0
        or primitive.ErrorComment is not None
        or primitive.OffendingElement is not None
    ):
        return None
    body = b"".join(
        (
            _uid(0x0002, primitive.AffectedSOPClassUID)
            if primitive.AffectedSOPClassUID is not None
            else b"",
            _us(0x0100, COMMAND_FIELD_C_STORE_RSP),
            _us(0x0120, int(primitive.MessageIDBeingRespondedTo)),
            _us(0x0800, NO_DATA_SET),
            _us(0x0900, 0),
            _uid(0x1000, primitive.AffectedSOPInstanceUID)
            if primitive.AffectedSOPInstanceUID is not None
            else b"",
        )
    )
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body


def fast_store_responses(assoc: Any) -> None:
    """Send ``assoc``'s Success C-STORE-RSPs through :func:`encode_c_store_rsp`."""
    dimse = assoc.dimse
    original: Callable[[Any, int], None] = dimse.send_msg

    def send_msg(primitive: Any, context_id: int) -> None:
        encoded = encode_c_store_rsp(primitive)
        max_pdu = dimse.maximum_pdu_size
        if (
            encoded is None
            or (max_pdu and len(encoded) > max_pdu - 6)
            or assoc.get_handlers(evt.EVT_DIMSE_SENT)
        ):
            original(primitive, context_id)
            return
        pdata = P_DATA()
        pdata.presentation_data_value_list.append((context_id, LAST_COMMAND_FRAGMENT + encoded))
        dimse.dul.send_pdu(pdata)

    dimse.send_msg = send_msg


def quiet_standard_handlers() -> None:
    """pynetdicom's standard logging handlers format every PDU and DIMSE message (and copy each
    received data set to test it for emptiness) even when nothing is logged: bind them only when
    the ``pynetdicom`` logger would print their INFO lines."""
    wanted = logging.getLogger("pynetdicom").isEnabledFor(logging.INFO)
    _config.LOG_HANDLER_LEVEL = "standard" if wanted else "none"
    cheap_context_copies()


def clone_contexts(value: Any) -> Any:
    """What ``copy.deepcopy`` gives for a list of presentation contexts, ~50× faster: each
    context copied, its transfer syntax list copied, the UIDs (immutable) shared. Anything
    else is deep-copied."""
    if not isinstance(value, list) or not all(isinstance(c, PresentationContext) for c in value):
        return copy.deepcopy(value)
    clones = []
    for context in value:
        clone = copy.copy(context)
        clone._transfer_syntax = list(context._transfer_syntax)
        clones.append(clone)
    return clones


def cheap_context_copies() -> None:
    """pynetdicom deep-copies the AE's ~150 storage presentation contexts (each with all its
    transfer syntaxes) for every association it accepts (``RequestHandler._create_association``,
    pynetdicom 3.0): tens of ms per association. Its module's ``deepcopy`` becomes
    :func:`clone_contexts`; that call is its only use there."""
    pynetdicom.transport.deepcopy = clone_contexts  # type: ignore[assignment]
