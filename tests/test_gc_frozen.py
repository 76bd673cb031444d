"""frozen_gc: nilearn's collections inside it skip what existed before, and nothing is lost after it."""

from __future__ import annotations

import gc
import weakref

from headmri.gc_frozen import frozen_gc


class Node:
    pass


def _cycle() -> weakref.ref:
    a, b = Node(), Node()
    a.other, b.other = b, a  # only the cycle collector frees these
    return weakref.ref(a)


def test_collections_inside_skip_older_objects_and_free_them_after():
    gc.collect()
    old = _cycle()
    with frozen_gc():
        assert gc.get_freeze_count() > 0
        new = _cycle()
        gc.collect()
        assert new() is None, "garbage made inside is still collected"
        assert old() is not None, "garbage from before is frozen out of the collection"
    assert gc.get_freeze_count() == 0
    gc.collect()
    assert old() is None, "and collected once unfrozen"
