"""How the node identifies itself: one Implementation Class UID and Version Name everywhere.

PS3.7 D.3.3.2: every A-ASSOCIATE-RQ and -AC carries the Implementation Class UID (and optionally a
Version Name) of the implementation that sends it; PS3.10 7.1 puts the same pair into the File Meta
Information of the files it writes. The conformance statement documents these two values, so every
pynetdicom AE the node creates (listener, result delivery, Storage Commitment reports, ``scp-node
echo``) is made by :func:`node_ae`, never by ``AE()`` with pynetdicom's own identification.
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID
from pynetdicom import AE

from scp_node import __version__

IMPLEMENTATION_CLASS_UID = UID("1.2.826.0.1.3680043.8.498.1.77.1")
IMPLEMENTATION_VERSION_NAME = f"SCPNODE_{__version__}"[:16]


def stamp(ds: Dataset) -> Dataset:
    """Put the node's identification into ``ds``'s File Meta Information (PS3.10 7.1) before the
    node writes it (results made with highdicom would otherwise carry the toolkit's)."""
    if not hasattr(ds, "file_meta"):
        ds.file_meta = FileMetaDataset()
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    return ds


def node_ae(ae_title: str) -> AE:
    """A pynetdicom AE titled ``ae_title`` that sends the node's implementation identification."""
    ae = AE(ae_title=ae_title)
    ae.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    ae.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    return ae
