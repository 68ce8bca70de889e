"""The end-to-end provenance tests of tests/test_provenance_all.py on a Firestore link store
(Google's emulator): a module of its own so that `make test`'s two workers run both stores
side by side. The store starts with what the settled SQLite store of tests/five_systems.py
holds, moved as a user moves it (`talksync links export` and `import`, and the origins)."""

from __future__ import annotations

import pytest

from tests.firestore_emulator import firestore_emulator  # noqa: F401
from tests.five_systems import new_firestore_store, settled_five
from tests.test_provenance_all import (  # noqa: F401 - collected here too, on this module's store
    pytestmark,
    test_in_another_order_and_a_bound_hit_while_still_writing,
    test_the_later_edit_wins_in_every_system_and_a_second_all_writes_nothing,
)


@pytest.fixture(scope="module")
def five(firestore_emulator, tmp_path_factory):  # noqa: F811 - the imported fixture
    yield from settled_five(tmp_path_factory, new_firestore_store())
