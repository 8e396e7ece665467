"""Configuration files the command line tests write: an engine TOML and a DVM TOML
(the same engine plus the DVM's sections). Nothing listens on 127.0.0.1:9.

The model source ``./tiny`` is a local path, which must exist when the file is loaded:
``write_config`` writes a file and makes that (empty) folder beside it."""

from __future__ import annotations

from pathlib import Path

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


def write_config(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` and make the ``tiny`` model folder beside it."""
    (path.parent / "tiny").mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
