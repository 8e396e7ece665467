"""``nostr-imagegen demo`` as a user runs it: a subprocess, no configuration, no network."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def test_demo_runs_the_round_trip_and_cleans_up(tmp_path: Path) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # its working folder lands here
    process = subprocess.run(
        [sys.executable, "-m", "nostr_imagegen.cli", "demo", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=170,
        env=env,
        check=False,
    )
    out = process.stdout
    assert process.returncode == 0, f"{out}\n{process.stderr}"
    assert "BUILT-IN TINY RANDOM-WEIGHT SMOKE MODEL" in out
    assert "request (kind 5100)" in out
    assert "A purple ostrich watching the sunset" in out
    assert '"negative_prompt"' in out
    assert "feedback  processing" in out
    # The DVM sends `success` just behind the result; the demo waits briefly for it.
    assert "feedback  success" in out
    assert "result (kind 6100)" in out
    # Library chatter (transformers' "requires torchvision ... falling back") stays quiet.
    assert "[transformers]" not in process.stderr
    assert "[diffusers]" not in process.stderr
    url = re.search(r"^  url   (http://127\.0\.0\.1:\d+/[0-9a-f]{64}\.png)$", out, re.MULTILINE)
    file = re.search(r"^  file  (\S+\.png)", out, re.MULTILINE)
    assert url is not None
    assert file is not None
    assert Path(file.group(1)).name == url.group(1).rsplit("/", 1)[1]
    # Everything it started is gone: the working folder, and the relay process.
    assert not Path(file.group(1)).exists()
    assert list(tmp_path.glob("nostr-imagegen-demo-*")) == []
    pid = re.search(r"nostr-relay, pid (\d+)", out)
    assert pid is not None
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid.group(1)), 0)
