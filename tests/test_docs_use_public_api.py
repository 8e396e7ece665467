"""Examples, benchmarks' users and docs teach the public API only.

Every ``import`` of nostr_imagegen in ``examples/*.py``, in the README and in the Python code
blocks of ``docs/*.md`` must name one of the public modules, and every name it takes must be
in that module's ``__all__``. A doc that shows ``from nostr_imagegen.service.relay import ...``
teaches a path we are free to move; this test fails on it.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_MODULES = (
    "nostr_imagegen",
    "nostr_imagegen.engine",
    "nostr_imagegen.service",
    "nostr_imagegen.testing",
)
# Code blocks that are Python, at any indentation (some sit inside list items).
_PYTHON_BLOCK = re.compile(r"^[ \t]*```python[ \t]*\n(.*?)^[ \t]*```", re.DOTALL | re.MULTILINE)
# For blocks that are illustrations rather than whole programs (``...`` placeholders).
_IMPORT_LINE = re.compile(
    r"^\s*(?:from\s+(nostr_imagegen[\w.]*)\s+import|import\s+(nostr_imagegen[\w.]*))", re.M
)


def _python_sources() -> list[tuple[str, str]]:
    examples = sorted(ROOT.glob("examples/*.py"))
    sources = [(str(path.relative_to(ROOT)), path.read_text()) for path in examples]
    for doc in [ROOT / "README.md", *sorted(ROOT.glob("docs/*.md"))]:
        for number, match in enumerate(_PYTHON_BLOCK.finditer(doc.read_text()), start=1):
            place = f"{doc.relative_to(ROOT)} (python block {number})"
            sources.append((place, _dedent(match.group(1))))
    return sources


def _dedent(code: str) -> str:
    lines = [line for line in code.splitlines() if line.strip()]
    indent = min((len(line) - len(line.lstrip()) for line in lines), default=0)
    return "\n".join(line[indent:] for line in code.splitlines())


def _imports(code: str) -> list[tuple[str, list[str]]]:
    """(module, names) for each import of nostr_imagegen; names empty for ``import x``."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return [(m.group(1) or m.group(2), []) for m in _IMPORT_LINE.finditer(code)]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("nostr_imagegen"):
            found.append((node.module or "", [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name.startswith("nostr_imagegen")]
    return found


SOURCES = _python_sources()


def test_the_scan_sees_the_examples_and_docs() -> None:
    # A guard on the guard: if the patterns stopped matching, every check below would pass.
    places = [place for place, code in SOURCES if _imports(code)]
    assert sum(place.startswith("examples/") for place in places) >= 4
    assert sum(place.startswith("docs/") for place in places) >= 8


@pytest.mark.parametrize(("place", "code"), SOURCES, ids=[place for place, _ in SOURCES])
def test_only_public_modules_and_names(place: str, code: str) -> None:
    for module_name, names in _imports(code):
        assert module_name in PUBLIC_MODULES, (
            f"{place} imports {module_name}, which is not a public module "
            f"(public: {', '.join(PUBLIC_MODULES)})"
        )
        exported = set(importlib.import_module(module_name).__all__)
        private = [name for name in names if name not in exported]
        assert not private, f"{place} imports {private} from {module_name}, not in its __all__"
