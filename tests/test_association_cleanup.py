"""Every association the DICOM listener serves gives back its sockets when it ends, however it
ends: released, aborted by the peer, or refused for want of an acceptable presentation context.

The guarded listener gives each association a wake socket pair; pynetdicom does not call the
association socket's ``close`` on every path, and a pair left to the garbage collector shows up
as ``ResourceWarning: unclosed <socket.socket ... family=1 ...>`` (seen in the corpus sweep).
"""

from __future__ import annotations

import gc
import time
import warnings

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import MRImageStorage  # type: ignore[attr-defined]

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"  # a DICOMDIR: never a storage context


def _associate(port: int, sop_class: str) -> Association:
    ae = AE(ae_title="CLEANUP")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(sop_class)
    return ae.associate("127.0.0.1", port, ae_title="LSTV_NODE")


def _unclosed_unix_sockets(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, ResourceWarning) and "family=1" in str(w.message)
    ]


def test_associations_give_back_their_sockets_however_they_end(running_node, settings):
    port = settings.dicom.port
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        released = _associate(port, MRImageStorage)
        assert released.is_established
        released.release()
        aborted = _associate(port, MRImageStorage)
        assert aborted.is_established
        aborted.abort()
        refused = _associate(port, MEDIA_STORAGE_DIRECTORY)
        assert not refused.is_established
        time.sleep(0.5)  # the listener's association threads wind down
        del released, aborted, refused
        gc.collect()
    assert _unclosed_unix_sockets(caught) == []
