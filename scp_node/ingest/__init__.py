"""Ingress: DIMSE (C-STORE SCP) and DICOMweb (STOW-RS) into the spool and index."""
