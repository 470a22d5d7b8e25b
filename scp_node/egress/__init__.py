"""Outbox delivery: C-STORE (:mod:`.dimse`), STOW-RS (:mod:`.stow`), retries (:mod:`.worker`)."""
