"""One Business NXT emulator per test module, its customers in ``associate`` as in Visma's
documentation and app template; and the sources the contracts are taken from.

Each contract test sends a request documented by Visma and checks the documented answer's
shape; its docstring names the source. Tests that write create rows of their own (unique
names), so the module's tests do not depend on each other's order.
"""

from __future__ import annotations

import pytest

from sandbox.server import Sandbox
from tests.test_sandbox_businessnxt import Gql

#: Visma's Business NXT API documentation (docs.vismasoftware.no/businessnxtapi, mirrored at
#: docs.business.visma.net): the pages the contracts cite
DOCS = "https://docs.vismasoftware.no/businessnxtapi"
SCHEMA = f"{DOCS}/schema/"
QUERIES = f"{DOCS}/schema/queries/"
AGGREGATES = f"{DOCS}/schema/queries/aggregates"
COMPANIES = f"{DOCS}/schema/queries/companies"
CUSTOMERS = f"{DOCS}/schema/queries/customers"
INSERTS = f"{DOCS}/schema/mutations/inserts"
UPDATES = f"{DOCS}/schema/mutations/updates"
DELETES = f"{DOCS}/schema/mutations/deletes"
DATES = f"{DOCS}/schema/datetime"
FILTERING = f"{DOCS}/features/filtering"
SORTING = f"{DOCS}/features/sorting"
PAGINATION = f"{DOCS}/features/pagination"
ALIASES = f"{DOCS}/features/aliases"
ERRORS = f"{DOCS}/features/errors"
BATCHES = f"{DOCS}/features/batches"
ORDER_HOWTO = f"{DOCS}/howto/create-and-finish-an-order"
AUTH = f"{DOCS}/authentication/services"
RELEASE_NOTES = f"{DOCS}/release-notes/"
#: Visma's public app template (Flask + gql): its requests, verbatim but for the company
TEMPLATE = "github.com/Visma-Software-AS-Product/BusinessNXT_API_Examples"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """A company whose customers are associates, served for the whole module."""
    running = Sandbox(state_dir=tmp_path_factory.mktemp("bnxt"), base_port=0,
                      systems=("businessnxt",), seed=42,
                      options={"businessnxt": {"customer_table": "associate"}}).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def nxt(sandbox) -> Gql:
    """A plain GraphQL client with a token (``nxt(query, **variables)``; ``$cid`` given)."""
    return Gql(sandbox)
