"""Configuration files the command line tests write: an engine TOML and a DVM TOML
(the same engine plus the DVM's sections). Nothing listens on 127.0.0.1:9."""

from __future__ import annotations

ENGINE_TOML = """
[models.tiny]
source = "./tiny"
family = "sd15"
"""

DVM_TOML = (
    ENGINE_TOML
    + """
[service]
relays = ["ws://127.0.0.1:9"]

[[storage]]
type = "local"
folder = "images"
base_url = "http://127.0.0.1:9"
"""
)
