"""Scale-out on Celery + RabbitMQ: ingest nodes publish analysis tasks, workers run the model.

Nothing outside this package knows the broker; ``celery`` and ``kombu`` are imported only by its
modules :mod:`app`, :mod:`ingest` and :mod:`worker` (the all-in-one node never imports them).

- :mod:`messages`: the task and the result as plain JSON (no pickles on the wire).
- :mod:`app`: the Celery application: durable queue, late acknowledgement, prefetch 1.
- :mod:`ingest`: the ingest node's side: publish complete studies, take results back.
- :mod:`fetch`: the worker's DICOMweb client (QIDO-RS, WADO-RS) towards an ingest node.
- :mod:`worker`: ``scp-node worker``: holds the model, runs tasks.
"""
