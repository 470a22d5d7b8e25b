"""Ingress: the DIMSE C-STORE SCP, Storage Commitment, and the receiver STOW-RS uses too."""
