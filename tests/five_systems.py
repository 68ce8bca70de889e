"""All five systems of the sandbox with `talksync run --all` settled once: the harness of the
tests that follow a value from system to system through the webshop, the hub of the four
dataflows (tests/test_provenance_all.py)."""

from __future__ import annotations

import io
import json
import pathlib

import yaml

from connectors.stores import open_link_store
from pipelines import auth, cli
from sandbox.people import ABSENT, People, approve_exact
from tests.conftest import SyncHarness, assert_counts_add_up

SYSTEMS = ("customwebshop", "customerp", "businesscentral", "businessnxt", "exact")
DATAFLOWS = ("customerp-customwebshop", "customwebshop-businesscentral",
             "customwebshop-businessnxt", "exact-customwebshop")


class FiveSystems(SyncHarness):
    """The five emulators, a link store (``store_url``), Exact authorised as a user does it,
    `talksync run` with several dataflows, and each system's phone number of a customer."""

    def __init__(self, sandbox, state: pathlib.Path, store_url: str):
        super().__init__(sandbox, state)
        self.store_url = store_url
        path = pathlib.Path(self.config)
        config = yaml.safe_load(path.read_text())
        config["link_store"] = store_url
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        code = approve_exact(sandbox)
        assert auth.auth_exact(self.config, "exact", stdin=io.StringIO(code + "\n"),
                               out=io.StringIO()) == "tokens/exact"
        self.people = People(sandbox, exact_token=self._exact_token)
        self.taken = 0

    # --- running ----------------------------------------------------------------------------
    def run_dataflows(self, *dataflows: str, args: tuple[str, ...] = ()) -> tuple[int, dict]:
        """`talksync run DATAFLOW… --config …` (``--all`` when none is named); the exit
        status and the whole report (every pass's sections, the passes)."""
        self.runs += 1
        report = self.state / f"report-{self.runs}.json"
        named = list(dataflows) or ["--all"]
        status = cli.main(["run", *named, "--config", self.config, "--report", str(report),
                           *args])
        body = json.loads(report.read_text()) if report.exists() else {"dataflows": []}
        for section in body["dataflows"]:
            assert_counts_add_up(section)
        return status, body

    def next_customer(self) -> str:
        """The e-mail of a customer no test has used yet, in all five systems by now."""
        emails = sorted(c["email"].lower() for c in self.shop_all("customers"))
        while True:
            email = emails[self.taken]
            self.taken += 1
            if all(self.phone(system, email) is not ABSENT for system in SYSTEMS):
                return email

    # --- each system's phone number of a customer (by e-mail), as people see and edit it --
    def phones(self, email: str) -> dict:
        return {system: self.phone(system, email) for system in SYSTEMS}

    def phone(self, system: str, email: str):
        return self.people.phone(system, email)

    def set_phone(self, system: str, email: str, phone: str) -> None:
        self.people.set_phone(system, email, phone)

    def _exact_token(self) -> str:
        with open_link_store(self.store_url) as store:
            entry = store.read_state("tokens/exact")
        return entry.value["access_token"]
