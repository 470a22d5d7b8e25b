"""The Celery application shared by ingest nodes (publishers) and workers (consumers).

Delivery guarantees come from RabbitMQ and three settings: the task queue and messages are
durable; a task is acknowledged only after it finished (``acks_late``), and requeued when the
worker process dies (``reject_on_worker_lost``; with the solo pool a dead worker simply drops
its connection and RabbitMQ requeues every unacknowledged message); each worker holds one task
at a time (prefetch 1), so a slow or killed worker strands nothing else. Publishing waits for
the broker's confirm. No result backend: results travel as messages to the ingest node's own
durable result queue (docs/deployment.md, "Cluster").
"""

from __future__ import annotations

import ssl
from typing import Any

from celery import Celery
from kombu import Exchange, Queue

from scp_node.cluster.messages import RESULT_QUEUE_PREFIX
from scp_node.config import ClusterSettings


def task_queue(name: str) -> Queue:
    """The durable analysis queue (declared the same way by every publisher and consumer)."""
    return Queue(name, Exchange(name, type="direct", durable=True), routing_key=name, durable=True)


def result_queue(name: str) -> Queue:
    """An ingest node's durable result queue, on the default exchange (routed by its name)."""
    return Queue(name, durable=True, auto_delete=False)


def result_queue_name(node_id: str) -> str:
    """The result queue of the ingest node ``node_id``."""
    return RESULT_QUEUE_PREFIX + node_id


def _broker_ssl(cluster: ClusterSettings) -> dict[str, Any] | bool:
    url = cluster.broker_url.get_secret_value() if cluster.broker_url else ""
    if not url.startswith("amqps://"):
        return False
    options: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
    if cluster.broker_ca_file:
        options["ca_certs"] = str(cluster.broker_ca_file)
    if cluster.broker_cert_file:
        options["certfile"] = str(cluster.broker_cert_file)
    if cluster.broker_key_file:
        options["keyfile"] = str(cluster.broker_key_file)
    return options


def make_app(cluster: ClusterSettings, name: str = "scp_node") -> Celery:
    """A Celery app for ``cluster``'s broker (``broker_url`` must be set)."""
    if cluster.broker_url is None or not cluster.broker_url.get_secret_value():
        raise ValueError("[cluster] broker_url is not set")
    app = Celery(name, set_as_current=False)
    queue = task_queue(cluster.queue)
    app.conf.update(
        broker_url=cluster.broker_url.get_secret_value(),
        broker_use_ssl=_broker_ssl(cluster),
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits for a broker that is down
        broker_transport_options={"confirm_publish": True},
        broker_heartbeat=60,
        task_queues=(queue,),
        task_default_queue=queue.name,
        task_default_exchange=queue.exchange.name,
        task_default_routing_key=queue.routing_key,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        result_backend=None,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        worker_send_task_events=False,
        worker_enable_remote_control=False,
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    return app
