"""Fail when .ci/requirements.lock no longer satisfies pyproject.toml.

Every requirement of the project (its core dependencies and the extras the lock is made for,
as `[tool.pip-tools] extra` lists them) must be pinned in the lock with a version inside the
requirement's range. Transitive completeness is `pip check`'s job after the install.

    .venv/bin/python .ci/check_lock.py        # exit 0, or 1 with one line per mismatch
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent


def locked_versions(lock_text: str) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise SystemExit(f"lock line is not an exact pin: {line!r}")
        pins[canonicalize_name(name)] = Version(version.split(";", 1)[0].strip())
    return pins


def main() -> int:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    project = pyproject["project"]
    extras: list[str] = pyproject["tool"]["pip-tools"]["extra"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for extra in extras:
        requirements += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = locked_versions((ROOT / ".ci" / "requirements.lock").read_text())

    problems = []
    for requirement in requirements:
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        pinned = pins.get(canonicalize_name(requirement.name))
        if pinned is None:
            problems.append(f"{requirement}: not in the lock")
        elif not requirement.specifier.contains(pinned, prereleases=True):
            problems.append(f"{requirement}: the lock has {pinned}")
    for problem in problems:
        print(f"lock out of date: {problem}", file=sys.stderr)
    if problems:
        print("regenerate it: .venv/bin/pip-compile (see README, Development)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
