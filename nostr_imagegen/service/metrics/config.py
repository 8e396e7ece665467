"""``[metrics]``: the operations endpoint (Prometheus ``/metrics``, ``/healthz``, the status
page at ``/``)::

    [metrics]
    listen = "127.0.0.1:9464"   # unset: no endpoint
    allow_public = false        # true to bind an address other than loopback
    stuck_after_s = 600.0       # /healthz fails when a running job shows no progress this long
    recent_jobs = 50            # jobs the status page lists

The endpoint has no authentication, so it binds loopback unless ``allow_public`` says
otherwise: put a reverse proxy with authentication in front of it to expose it.
"""

from __future__ import annotations

import ipaddress
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["MetricsConfig"]

_LISTEN = re.compile(r"^(?P<host>[0-9A-Za-z.:\[\]-]+):(?P<port>[0-9]{1,5})$")


class MetricsConfig(BaseModel):
    """The ``[metrics]`` section (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    listen: str | None = None
    allow_public: bool = False
    stuck_after_s: float = Field(default=600.0, gt=0.0, le=24 * 3600.0)
    recent_jobs: int = Field(default=50, ge=1, le=1000)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str | None) -> str | None:
        if value is not None:
            match = _LISTEN.match(value)
            if match is None or not 0 <= int(match["port"]) <= 65535:
                raise ValueError("listen must be host:port, e.g. 127.0.0.1:9464")
        return value

    @model_validator(mode="after")
    def _loopback_unless_public(self) -> MetricsConfig:
        address = self.listen_address()
        if address is not None and not self.allow_public and not _is_loopback(address[0]):
            raise ValueError(
                f"metrics listen {self.listen!r} is not a loopback address: the endpoint has "
                "no authentication; set allow_public = true to bind it anyway"
            )
        return self

    def listen_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of ``listen``, or None."""
        if self.listen is None:
            return None
        match = _LISTEN.match(self.listen)
        assert match is not None
        return match["host"].strip("[]"), int(match["port"])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
