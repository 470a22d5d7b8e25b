"""Study assembly, the job state machine, the model worker and restart recovery.

Only this package knows the order of the steps: complete → select series → load → infer →
report → outbox. See :mod:`scp_node.store.jobs` for the states.
"""

from scp_node.pipeline.service import Pipeline

__all__ = ["Pipeline"]
