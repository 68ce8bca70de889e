"""The end-to-end provenance tests of tests/test_provenance_all.py on a Firestore link store
(Google's emulator): a module of its own so that `make test`'s two workers run both stores
side by side."""

from __future__ import annotations

import pytest

from tests.firestore_emulator import firestore_emulator  # noqa: F401
from tests.test_provenance_all import (  # noqa: F401 - collected here too, on this module's store
    settled_five,
    test_in_another_order_and_a_bound_hit_while_still_writing,
    test_the_later_edit_wins_in_every_system_and_a_second_all_writes_nothing,
)


@pytest.fixture(scope="module")
def five(request, tmp_path_factory):
    yield from settled_five("firestore", request, tmp_path_factory)
