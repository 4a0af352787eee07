"""Where the lab's data lives: zones, keys, the public-suffix list, providers' settings.

``data/`` beside the package (a clone, or an editable install), or the folder named by
``MAIL_LABS_DATA`` when the package is installed elsewhere (a shared JupyterHub).
"""

from __future__ import annotations

import os
from pathlib import Path

#: The project folder that holds ``labsupport/`` and ``data/``.
PROJECT_DIR = Path(__file__).resolve().parents[2]

#: The lab's data folder.
DATA_DIR = Path(os.environ.get("MAIL_LABS_DATA", PROJECT_DIR / "data"))
