"""The smallest useful pynetdicom Storage SCP: a peer for bench_ingest.py, not part of the node.

Writes each received data set as sent (file meta + raw bytes) and fsyncs it; no checks, no index.
It shows what pynetdicom itself costs per instance on this machine.

    python bench/minimal_pynetdicom_scp.py PORT OUT_DIR
"""

from __future__ import annotations

import os
import sys
from typing import Any

from pydicom.filewriter import write_file_meta_info
from pynetdicom import AE, AllStoragePresentationContexts, evt

UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"


def main() -> int:
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)

    def on_store(event: Any) -> int:
        path = os.path.join(out, f"{event.request.AffectedSOPInstanceUID}.dcm")
        with open(path, "wb") as handle:
            handle.write(b"\0" * 128 + b"DICM")
            write_file_meta_info(handle, event.file_meta, enforce_standard=True)
            handle.write(event.request.DataSet.getvalue())
            handle.flush()
            os.fsync(handle.fileno())
        return 0x0000

    ae = AE("LSTV_NODE")
    ae.maximum_pdu_size = 0
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, [J2K_LOSSLESS, *UNCOMPRESSED])
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
