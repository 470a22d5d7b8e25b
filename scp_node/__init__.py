"""scp-node: a DICOM node that screens sagittal T2 lumbar MR for LSTV and returns a DICOM SR."""

__version__ = "0.1.0"
