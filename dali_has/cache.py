"""Where dali-has keeps what it generates once and reuses (the compiled plugin, the benchmark's JPEG set):
$DALI_HAS_CACHE, else $XDG_CACHE_HOME/dali_has, else ~/.cache/dali_has."""
from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "DALI_HAS_CACHE"


def cache_root() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dali_has"
