"""Notebook 03 also runs with the recording relay where this machine would sniff live
(CI runs as root, where the notebooks' own nbval run takes the live mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labsupport.wire.capture import MODE_VARIABLE, can_sniff

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "03-starttls-vs-implicit-tls.ipynb"


@pytest.mark.skipif(not can_sniff()[0], reason="without sniffing rights the notebook run "
                    "under nbval already uses the relay")
def test_notebook_03_in_relay_mode(tmp_path: Path) -> None:
    env = {**os.environ, MODE_VARIABLE: "relay", "MAIL_LABS_HOME": str(tmp_path),
           "MAIL_LABS_TEST_HOME_SET": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-q",
         "-p", "no:cacheprovider", "-p", "no:xdist", str(NOTEBOOK)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout
