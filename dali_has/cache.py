"""Where dali-has keeps what it generates once and reuses (the compiled plugin, the benchmark's JPEG set):
$DALI_HAS_CACHE, else $XDG_CACHE_HOME/dali_has, else ~/.cache/dali_has."""
from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    if os.environ.get("DALI_HAS_CACHE"):
        return Path(os.environ["DALI_HAS_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dali_has"
