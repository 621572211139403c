"""Start-up speed: the garbage collector waits while the process imports and wires itself.

Editors launch `gateway lsp` often and wait for its initialize result. Start-up allocates a few hundred
thousand long-lived objects (lsprotocol's attrs classes, pydantic schemas, the registry), and the cyclic
collector walks them again and again while they are built, finding almost nothing to free: ~10% of the
start-up time. `pause_gc()` turns it off at process start; `resume_gc()` turns it back on once the first
client got its answer, after moving everything start-up built into the permanent generation
(`gc.freeze()`), so later collections do not walk those objects either.
"""

from __future__ import annotations

import gc

_paused = False


def pause_gc() -> None:
    """Stop automatic cyclic collection until `resume_gc()` (a no-op when it is already off)."""
    global _paused
    if gc.isenabled():
        gc.disable()
        _paused = True


def resume_gc() -> None:
    """Freeze what start-up built and collect automatically again, if `pause_gc()` turned it off."""
    global _paused
    if _paused:
        _paused = False
        gc.freeze()
        gc.enable()
    from . import codecache

    codecache.save()  # what start-up compiled (gateway/codecache.py), once the first client has its answer
