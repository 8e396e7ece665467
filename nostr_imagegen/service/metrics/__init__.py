"""Metrics, health and the status page of a running DVM (``[metrics]``; docs/operations.md).

metrics = ServiceMetrics()
runner = JobRunner(..., **metrics.hooks())
metrics.attach(runner, pool)
async with OpsServer(metrics, "127.0.0.1", 9464):
    await runner.run()
"""

from nostr_imagegen.service.metrics.config import MetricsConfig
from nostr_imagegen.service.metrics.observer import ServiceMetrics
from nostr_imagegen.service.metrics.server import OpsServer

__all__ = ["MetricsConfig", "OpsServer", "ServiceMetrics"]
