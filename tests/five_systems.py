"""All five systems of the sandbox with `talksync run --all` settled once: the harness of the
tests that follow a value from system to system through the webshop, the hub of the four
dataflows (tests/test_provenance_all.py).

The first settle of five systems is the longest set-up of the suite, so it is made once per
test session (:func:`settled_template`, shared by `make test`'s workers through a file lock)
and every module that needs it starts from a copy (:func:`settled_five`): the emulators' state
on fresh ports, and the link store (a copy of the SQLite file, or the same links, watermarks
and origins in a Firestore store).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import pathlib
import shutil
import sqlite3
import uuid
from collections.abc import Iterator

import pytest
import yaml

from connectors.stores import open_link_store
from core.provenance import OriginWrite, RecordOrigins, Version
from pipelines import auth, cli
from sandbox.people import ABSENT, People, approve_exact
from sandbox.server import Sandbox
from tests.conftest import SyncHarness, assert_counts_add_up

SYSTEMS = ("customwebshop", "customerp", "businesscentral", "businessnxt", "exact")
DATAFLOWS = ("customerp-customwebshop", "customwebshop-businesscentral",
             "customwebshop-businessnxt", "exact-customwebshop")
#: only the customers are synced by the five-system tests (every dataflow has the pair): the
#: first settle of the five seeded systems is then minutes shorter
CUSTOMERS = ("--pairs", "customer")


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


# --- one settled state per session, copied for each module -----------------------------------
def settled_template(tmp_path_factory) -> pathlib.Path:
    """The five systems' sandbox state (``sandbox/``) and SQLite link store (``links.db``) right
    after a first `--all --pairs customer` that settled (seed 42). Made once per session: the
    first worker to ask makes it while the other waits on the lock, then both copy it."""
    template = _session_dir(tmp_path_factory) / "five-systems-settled"
    with _locked(template.with_name(template.name + ".lock")):
        if not (template / "settled").exists():
            shutil.rmtree(template, ignore_errors=True)    # a half-made one, if a build failed
            _settle(template)
            (template / "settled").touch()
    return template


def _session_dir(tmp_path_factory) -> pathlib.Path:
    """A folder of this test session that every xdist worker shares (each worker's base temp
    folder is a subfolder of the run's), or the session's own without xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if base.name.startswith("popen-gw") else base


@contextlib.contextmanager
def _locked(path: pathlib.Path) -> Iterator[None]:
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _settle(state: pathlib.Path) -> None:
    with pytest.MonkeyPatch.context() as env, \
            Sandbox(state_dir=state / "sandbox", base_port=0, systems=SYSTEMS,
                    seed=42) as sandbox:
        for name, value in sandbox.environ().items():
            env.setenv(name, value)
        harness = FiveSystems(sandbox, state, f"sqlite:///{state}/links.db")
        status, report = harness.run_dataflows(args=(*CUSTOMERS, "--max_passes", "6"))
        assert report["settled"], report["passes"]


def settled_five(tmp_path_factory, store_url=None) -> Iterator[FiveSystems]:
    """A :class:`FiveSystems` on a copy of :func:`settled_template`, served on fresh ports, for
    a module; its link store a copy of the template's SQLite file, or, with ``store_url`` (an
    empty Firestore store), the template's links, watermarks and origins put into that store.
    Exact's consent is given again (its tokens are state entries of the store). Its secrets
    are exported while the module runs."""
    template = settled_template(tmp_path_factory)
    state = tmp_path_factory.mktemp("five")
    shutil.copytree(template / "sandbox", state / "sandbox")
    for part in template.glob("links.db*"):        # the database and any journal beside it
        shutil.copy(part, state / part.name)
    sqlite_url = f"sqlite:///{state}/links.db"
    if store_url is not None:
        copy_link_store(state / "links.db", store_url, state / "links.jsonl")
    with pytest.MonkeyPatch.context() as env, \
            Sandbox(state_dir=state / "sandbox", base_port=0, systems=SYSTEMS,
                    seed=42) as sandbox:
        for name, value in sandbox.environ().items():
            env.setenv(name, value)
        yield FiveSystems(sandbox, state, store_url or sqlite_url)


def copy_link_store(sqlite_path: pathlib.Path, store_url: str, through: pathlib.Path) -> None:
    """What a SQLite link store remembers, into another store: the links, watermarks and dead
    letters as a user moves them (`talksync links export` and `import`), then the origins of
    written values, which an export leaves out (pipelines/links_io.py), through the store's own
    ``save_origins`` (the same merge a run's writes go through)."""
    assert cli.main(["links", "export", "--store", f"sqlite:///{sqlite_path}",
                     "--out", str(through)]) == 0
    assert cli.main(["links", "import", "--store", store_url, "--in", str(through)]) == 0
    with contextlib.closing(sqlite3.connect(sqlite_path)) as db:
        rows = db.execute("SELECT system, entity, record_id, origins FROM record_origins")
        origins = [RecordOrigins.from_json(system, entity, record_id, json.loads(text))
                   for system, entity, record_id, text in rows.fetchall()]
    with open_link_store(store_url) as store:
        store.save_origins([_as_written(record) for record in origins])


def _as_written(record: RecordOrigins) -> OriginWrite:
    """The write whose merge into an empty store leaves ``record`` as it is: a write that
    replaced a version made at ``others_edited`` keeps that time (core/provenance.py)."""
    edited = record.others_edited
    return OriginWrite(record, Version(modified=edited) if edited is not None else None)


def new_firestore_store() -> str:
    """An empty store of its own in the Firestore emulator (a prefix no other module uses)."""
    from tests.firestore_emulator import PROJECT
    return f"firestore://{PROJECT}?prefix=prov{uuid.uuid4().hex[:8]}_"
