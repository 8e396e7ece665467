#!/usr/bin/env bash
# Packaging checked as a published package: build the sdist and the wheel, install the wheel
# without extras into a clean virtual environment, and use it there.
set -euo pipefail
cd "$(dirname "$0")/.."
export PIP_DISABLE_PIP_VERSION_CHECK=1
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# --no-isolation: build with the lock's setuptools in .venv rather than whatever is newest.
.venv/bin/python -m build --no-isolation --sdist --wheel --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log"; exit 1; }
wheel="$(ls "$work"/dist/nostr_imagegen-*.whl)"
sdist="$(ls "$work"/dist/nostr_imagegen-*.tar.gz)"
tar -tzf "$sdist" >"$work/sdist.txt"
grep -q '/nostr_imagegen/py.typed$' "$work/sdist.txt" || { echo "sdist lacks py.typed"; exit 1; }

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q -c .ci/requirements.lock "$wheel"
"$work/venv/bin/pip" check
# Run from an empty folder, so the checkout cannot stand in for the installed package.
(cd "$work" && "$work/venv/bin/python" - <<'PY'
import importlib.util, json, sys
from importlib.resources import files

import nostr_imagegen
from nostr_imagegen import Keys, UnsignedEvent, parse_event, parse_image_job, sign_event

assert "site-packages" in nostr_imagegen.__file__, nostr_imagegen.__file__
assert files("nostr_imagegen").joinpath("py.typed").is_file(), "py.typed missing from the wheel"
for heavy in ("torch", "diffusers", "websockets", "httpx"):
    assert importlib.util.find_spec(heavy) is None, f"{heavy} installed without an extra"

customer = Keys.generate()
request = sign_event(
    UnsignedEvent(
        created_at=1_700_000_000,
        kind=5100,
        tags=[["i", "a lighthouse at dusk", "text"], ["param", "ratio", "16:9"]],
        content="",
    ),
    customer,
)
job = parse_image_job(parse_event(json.loads(request.to_json())))
assert job.prompt == "a lighthouse at dusk", job.prompt
print(f"wheel smoke test: {nostr_imagegen.__version__} imported from site-packages, "
      f"py.typed present, a request parsed (ratio {job.ratio})")
PY
)
