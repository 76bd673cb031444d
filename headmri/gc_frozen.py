"""nilearn calls ``gc.collect()`` for every image whose data it reads (``nilearn._utils.niimg.safe_get_data``,
nilearn 0.13): a full collection over every object the process holds, 0.1-0.2 s each once numpy, nibabel,
matplotlib or torch are loaded. Inside ``frozen_gc()`` the objects that exist on entry are moved out of the
collector's reach (``gc.freeze``), so those collections only walk what was made since; on exit they are
back. Nothing is leaked: frozen objects are collected again after ``gc.unfreeze``."""

from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def frozen_gc() -> Iterator[None]:
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
