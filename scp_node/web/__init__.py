"""The HTTP side of the node: DICOMweb (STOW-RS in, QIDO-RS/WADO-RS out), probes, and the server.

STOW-RS is an ingress path like C-STORE: :mod:`.stow` hands each part to
:class:`scp_node.ingest.receiver.Receiver`, the one gate into the spool and index.
"""
