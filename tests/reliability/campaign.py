"""A seeded fault campaign against the sandbox: faults, crashes and edits, then one clean run.

Each seed is a scenario of its own, reproducible from its number alone:

1. a fresh sandbox (its data from the seed) and a fresh link store;
2. a few rounds of: random edits on both systems, random faults in both systems (5xx and 429
   errors, lost responses — committed, then the connection dropped — and latency), and a sync
   run that may be SIGKILLed at a random point. Most records are edited on one side only in the
   whole scenario; in every round one customer and one product are also edited on *both* sides,
   the same properties, one side after the other: under the shipped ``conflict: latest`` (and,
   before a first link, the first-link rule: the newer record wins) the later edit must win.
   The campaign reads back the modified time each system stamped on the two edits, checks they
   are in the order it made them, and expects the later one's values;
3. the faults cleared and one clean run, after which:
   - the oracle (``tests/reliability/oracle.py``) finds the systems and the link store
     converged: links and records one to one, no reservation pending, no duplicate record or
     link under a match key, and both records of every link equal in every property that maps
     both ways (through the pair's mapper, as the pipeline compares them);
   - every edit has reached both systems, with the expected winner where both sides edited;
   - the clean run ended without dead letters (exit status 0);
   - a further run writes nothing.

``Campaign(min_rounds=2, kill_first_round=True)`` (the fast subset in ``make test``) makes sure
a seed has at least two rounds and that its first run is SIGKILLed while it writes.

Run a range of seeds: ``python -m tests.reliability.campaign --seeds 0-99`` (or ``make
reliability``); a failing seed is rerun alone with ``--seeds N``.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import datetime
import decimal
import os
import pathlib
import random
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from core.model import PENDING  # noqa: E402
from pipelines.config import load_config  # noqa: E402
from sandbox.server import Sandbox  # noqa: E402
from tests.conftest import SyncHarness  # noqa: E402
from tests.reliability.oracle import assert_converged, read_links  # noqa: E402
from tests.test_sync_customerp_customwebshop import _writes  # noqa: E402

DATAFLOW = "customerp-customwebshop"

_ROUNDS = (1, 3)              # faulty rounds per seed (inclusive range)
_EDITS = (2, 8)               # edits per round
_KILL_CHANCE = 0.4            # chance that a faulty run is killed mid-way
_PROGRESS_MARKERS = ("wrote", "committed", "read")
#: where a forced kill strikes: at the first of these lines (writes sent, links not committed)
_FORCED_KILL_MARKER, _FORCED_KILL_AFTER = "wrote", 1
#: runs tried for the forced kill before the campaign gives up
_FORCED_KILL_ATTEMPTS = 3


@dataclasses.dataclass
class Expectation:
    """What both systems must show at the end: (kind, match key) → {property: value}."""

    values: dict = dataclasses.field(default_factory=dict)

    def expect(self, kind: str, key: str, **values) -> None:
        self.values.setdefault((kind, key), {}).update(values)


class Campaign:
    """One seed's scenario."""

    def __init__(self, seed: int, workdir: pathlib.Path, log=print, *, min_rounds: int = 1,
                 kill_first_round: bool = False, retry_backoff_s: float | None = None):
        self.seed = seed
        #: the systems' ``retry_backoff_s`` (None: the client's own), for every run's process
        self.retry_backoff_s = retry_backoff_s
        self.min_rounds = min_rounds
        self.kill_first_round = kill_first_round
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.log = log
        self.expected = Expectation()
        self.counter = 0
        self.edited_on: dict = {}   # (kind, match key) -> the side it is edited on

    def run(self) -> None:
        with Sandbox(state_dir=self.workdir / "sandbox", base_port=0,
                     systems=("customwebshop", "customerp"), seed=self.seed) as sandbox, \
                _exported(sandbox.environ()):
            h = SyncHarness(sandbox, self.workdir)
            backoff = ({} if self.retry_backoff_s is None
                       else {"retry_backoff_s": self.retry_backoff_s})
            for system in ("customwebshop", "customerp"):
                h.configure(system, max_retries=2, timeout_s=10, **backoff)
            rounds = max(self.min_rounds, self.rng.randint(*_ROUNDS))
            for round_no in range(rounds):
                self._clear_faults(h)     # edits are the users', not talksync's: no faults
                self._edit(h, self.rng.randint(*_EDITS))
                self._edit_both_sides(h, "customer")
                self._edit_both_sides(h, "product")
                faults = self._faults(h)
                killed = self._faulty_run(h, must_kill=self.kill_first_round and round_no == 0)
                self.log(f"seed {self.seed} round {round_no}: faults {faults}, "
                         f"{'killed' if killed else 'finished'}")
            self._clear_faults(h)
            status, report = h.run()
            assert status == 0, f"seed {self.seed}: the clean run left dead letters: {report}"
            assert_converged(h.config, DATAFLOW)
            self._check_edits(h)
            self._conflicts_on_linked_records(h)
            h.clear_logs()
            status, report = h.run()
            assert status == 0 and _writes(report) == {}, \
                f"seed {self.seed}: the run after the clean run wrote {_writes(report)}"
            assert h.writes("customwebshop") == {} and h.writes("customerp") == {}

    # --- faults and runs ------------------------------------------------------------------
    @staticmethod
    def _clear_faults(h: SyncHarness) -> None:
        for system in ("customwebshop", "customerp"):
            h.sandbox.set_faults(system)

    def _faults(self, h: SyncHarness) -> dict:
        chosen = {}
        for system in ("customwebshop", "customerp"):
            faults = {}
            if self.rng.random() < 0.6:
                faults["error_rate"] = round(self.rng.uniform(0.02, 0.25), 2)
                faults["status"] = self.rng.choice([500, 502, 503, 504, 429])
            if self.rng.random() < 0.5:
                faults["lost_response_rate"] = round(self.rng.uniform(0.02, 0.3), 2)
            if self.rng.random() < 0.3:
                faults["latency_ms"] = self.rng.choice([5, 20, 50])
            faults["seed"] = self.rng.randrange(1_000_000)
            h.sandbox.set_faults(system, **faults)
            chosen[system] = faults
        return chosen

    def _faulty_run(self, h: SyncHarness, must_kill: bool = False) -> bool:
        """A run under faults; returns whether it was killed. With ``must_kill`` it is killed
        at its first write. The faults can stop a run before it writes anything (its check
        or every pair's read refused after the retries): that run is a faulty run like any
        other, and the forced kill is tried again on the next, up to
        :data:`_FORCED_KILL_ATTEMPTS` runs (more is an error of the campaign)."""
        if not must_kill:
            if self.rng.random() >= _KILL_CHANCE:
                h.run()
                return False
            return self._killed_run(h, self.rng.choice(_PROGRESS_MARKERS),
                                    self.rng.randint(1, 6))[0]
        ended = []
        for _ in range(_FORCED_KILL_ATTEMPTS):
            killed, tail = self._killed_run(h, _FORCED_KILL_MARKER, _FORCED_KILL_AFTER)
            if killed:
                return True
            ended.append(tail)
            self.log(f"seed {self.seed}: the run ended before its forced kill; again")
        raise AssertionError(
            f"seed {self.seed}: {_FORCED_KILL_ATTEMPTS} runs ended before their forced kill "
            f"(no '{_FORCED_KILL_MARKER}' line); the last one's stderr ended with:\n"
            + "".join(ended[-1]))

    def _killed_run(self, h: SyncHarness, marker: str, after: int
                              ) -> tuple[bool, list[str]]:
        """Runs talksync in a process, SIGKILLed at the ``after``-th progress line with
        ``marker``; whether it was killed, and the last lines of its stderr."""
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "customerp-customwebshop",
             "--config", h.config], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        seen = 0
        tail: collections.deque[str] = collections.deque(maxlen=15)
        try:
            for line in process.stderr:
                tail.append(line)
                if f": {marker} " in line:
                    seen += 1
                    if seen >= after:
                        process.send_signal(signal.SIGKILL)
                        break
        finally:
            process.kill()
            process.wait(timeout=120)
        return seen >= after and process.returncode == -signal.SIGKILL, list(tail)

    # --- edits ------------------------------------------------------------------------------
    def _edit(self, h: SyncHarness, count: int) -> None:
        shop_customers = [c for c in h.list_all("customwebshop", "customers")
                          if not c["deleted"]]
        erp_customers = h.list_all("customerp", "Customers")
        shop_products = [p for p in h.list_all("customwebshop", "products") if not p["deleted"]]
        erp_products = h.list_all("customerp", "Products")
        for _ in range(count):
            kind = self.rng.choice(["shop_customer", "erp_customer", "shop_product",
                                    "erp_product", "new_shop_customer", "new_erp_product"])
            self.counter += 1
            tag = f"{self.seed}-{self.counter}"
            if kind == "shop_customer":
                c = self.rng.choice(shop_customers)
                if not self._claim(("c", c["email"].lower()), "shop"):
                    continue
                phone, city = f"+47 4{self.rng.randrange(10**7):07d}", f"Bygd {tag}"
                h.patch_shop("customers", c["id"], {"phone": phone, "address": {"city": city}})
                self.expected.expect("customer", c["email"].lower(), phone=phone, city=city)
            elif kind == "erp_customer":
                c = self.rng.choice(erp_customers)
                if not c.get("Email") or not self._claim(("c", c["Email"].lower()), "erp"):
                    continue
                phone = f"+47 9{self.rng.randrange(10**7):07d}"
                h.put_erp("Customers", c["CustomerNo"], {"Phone": phone})
                self.expected.expect("customer", c["Email"].lower(), phone=phone)
            elif kind == "shop_product":
                p = self.rng.choice(shop_products)
                if not self._claim(("p", p["sku"]), "shop"):
                    continue
                price = decimal.Decimal(self.rng.randrange(100, 99999)) / 100
                h.patch_shop("products", p["id"], {"name": f"Vare {tag} æøå",
                                                   "price": str(price)})
                self.expected.expect("product", p["sku"], name=f"Vare {tag} æøå", price=price)
            elif kind == "erp_product":
                p = self.rng.choice(erp_products)
                if not self._claim(("p", p["ItemNo"]), "erp"):
                    continue
                price = decimal.Decimal(self.rng.randrange(100, 99999)) / 100
                h.put_erp("Products", p["ItemNo"], {"SalesPrice": price})
                self.expected.expect("product", p["ItemNo"], price=price)
            elif kind == "new_shop_customer":
                email = f"ny.kunde.{tag}@example.no"
                self._claim(("c", email), "shop")
                h.post("customwebshop", "customers", {
                    "email": email, "first_name": "Åse", "last_name": f"Kunde {tag}",
                    "phone": "+47 400 00 000", "address": {"line1": "Storgata 1",
                                                          "postal_code": "0155",
                                                          "city": "Oslo", "country": "NO"}})
                self.expected.expect("customer", email, city="Oslo")
            else:
                item = f"NEW-{tag}"
                self._claim(("p", item), "erp")
                h.post("customerp", "Products", {"ItemNo": item, "Description": f"Ny vare {tag}",
                                                 "SalesPrice": 10, "VatCode": "3",
                                                 "StockQty": 4})
                self.expected.expect("product", item, name=f"Ny vare {tag}",
                                     price=decimal.Decimal(10))

    def _claim(self, key: tuple, side: str) -> bool:
        """Whether ``key`` may be edited on ``side``: never edited, or edited there before."""
        return self.edited_on.setdefault(key, side) == side

    def _conflicts_on_linked_records(self, h: SyncHarness) -> None:
        """With every record linked, edit one customer and one product on both sides and run
        once more without faults: each edited property is a conflict the report counts, and
        the later edit wins (``conflict: latest``), whatever the rounds before left linked: the
        ERP's (the source) for the customer, the webshop's (the target) for the product."""
        conflicts = {kind: self._edit_both_sides(h, kind, linked_only=True, later=later)
                     for kind, later in (("customer", "erp"), ("product", "shop"))}
        status, report = h.run()
        assert status == 0, f"seed {self.seed}: the run after the conflicts failed: {report}"
        got = {kind: report["pairs"][kind]["conflicts"] for kind in conflicts}
        assert got == conflicts, \
            f"seed {self.seed}: expected conflicts {conflicts}, the run counted {got}"
        assert_converged(h.config, DATAFLOW)
        self._check_edits(h)

    def _edit_both_sides(self, h: SyncHarness, kind: str, linked_only: bool = False,
                         later: str | None = None) -> int:
        """Edit the same properties of one record on both systems, one after the other (the
        order drawn), and expect the later edit to win: ``conflict: latest`` once the two are
        linked, the first-link rule (the newer record wins) before. The winner is taken from
        the modified times the systems stamped, after checking they are in the order made.
        ``later`` picks the side edited last (else drawn). Returns the number of properties the
        two edits set to different values: the conflicts a run against snapshots counts."""
        both = self._both_sides(h, kind, linked_only)
        assert both or not linked_only, f"seed {self.seed}: no linked {kind} to edit"
        if not both:
            return 0
        key = self.rng.choice(sorted(both))
        if not self._claim((kind[0], key), "both"):
            return 0
        shop, erp = both[key]
        self.counter += 1
        tag = f"{self.seed}-{self.counter}"
        edits = {"shop": self._shop_edit(h, kind, shop, tag),
                 "erp": self._erp_edit(h, kind, erp, tag)}
        first, second = self.rng.sample(["shop", "erp"], 2)
        if later is not None:
            first, second = {"shop": "erp", "erp": "shop"}[later], later
        stamps = {side: edits[side]() for side in (first, second)}
        winner = max(stamps, key=lambda side: stamps[side][0])
        assert stamps[second][0] > stamps[first][0], \
            f"seed {self.seed}: {kind} {key}: the {second} edit was made after the {first} " \
            f"edit but stamped {stamps[second][0]}, not after {stamps[first][0]}"
        self.expected.expect(kind, key, **stamps[winner][1])
        self.log(f"seed {self.seed}: {kind} {key} edited on both sides "
                 f"({'linked' if linked_only or _linked(h, kind) else 'not linked yet'}); "
                 f"{first} first, {second} later: expect {stamps[winner][1]}")
        shop_values, erp_values = stamps["shop"][1], stamps["erp"][1]
        return sum(shop_values[name] != erp_values[name] for name in shop_values)

    @staticmethod
    def _both_sides(h: SyncHarness, kind: str, linked_only: bool) -> dict:
        """match key -> (webshop record, ERP record) of the live records on both systems that
        are linked to each other (a true conflict against the link's snapshots), or before the
        first link of the pair (unless ``linked_only``), that share a match key (the first-link
        rule decides)."""
        if kind == "customer":
            shop = {c["email"].lower(): c for c in h.shop_all("customers")}
            erp = {c["Email"].lower(): c for c in h.list_all("customerp", "Customers")
                   if c.get("Email")}
            erp_key = "CustomerNo"
        else:
            shop = {p["sku"]: p for p in h.shop_all("products")}
            erp = {p["ItemNo"]: p for p in h.list_all("customerp", "Products")}
            erp_key = "ItemNo"
        both = {key: (shop[key], erp[key]) for key in shop.keys() & erp.keys()}
        linked = _linked(h, kind)
        if linked or linked_only:
            both = {key: (s, e) for key, (s, e) in both.items()
                    if (e[erp_key], s["id"]) in linked}
        return both

    def _shop_edit(self, h: SyncHarness, kind: str, record: dict, tag: str):
        """The webshop's edit as a call: it returns (modified time stamped, values set)."""
        if kind == "customer":
            values = {"phone": f"+47 4{self.rng.randrange(10**7):07d}",
                      "city": f"Nettby {tag}"}
            body = {"phone": values["phone"], "address": {"city": values["city"]}}
        else:
            values = {"name": f"Nettvare {tag}",
                      "price": decimal.Decimal(self.rng.randrange(100, 99999)) / 100}
            body = {"name": values["name"], "price": str(values["price"])}
        resource = "customers" if kind == "customer" else "products"
        return lambda: (_instant(h.patch_shop(resource, record["id"], body)["updated_at"]),
                        values)

    def _erp_edit(self, h: SyncHarness, kind: str, record: dict, tag: str):
        """The ERP's edit as a call: it returns (modified time stamped, values set)."""
        if kind == "customer":
            values = {"phone": f"+47 9{self.rng.randrange(10**7):07d}", "city": f"Erpby {tag}"}
            resource, key = "Customers", record["CustomerNo"]
            body = {"Phone": values["phone"], "City": values["city"]}
        else:
            values = {"name": f"Erpvare {tag}",
                      "price": decimal.Decimal(self.rng.randrange(100, 99999)) / 100}
            resource, key = "Products", record["ItemNo"]
            body = {"Description": values["name"], "SalesPrice": values["price"]}
        return lambda: (_instant(h.put_erp(resource, key, body)["ModifiedAt"]), values)

    def _check_edits(self, h: SyncHarness) -> None:
        shop_c = {c["email"].lower(): c for c in h.list_all("customwebshop", "customers")}
        erp_c = {c["Email"].lower(): c for c in h.list_all("customerp", "Customers")
                 if c.get("Email")}
        shop_p = {p["sku"]: p for p in h.list_all("customwebshop", "products")}
        erp_p = {p["ItemNo"]: p for p in h.list_all("customerp", "Products")}
        for (kind, key), values in sorted(self.expected.values.items()):
            if kind == "customer":
                shop, erp = shop_c[key], erp_c[key]
                got = {"phone": (shop["phone"], erp["Phone"]),
                       "city": (shop["address"]["city"], erp["City"])}
            else:
                shop, erp = shop_p[key], erp_p[key]
                got = {"name": (shop["name"], erp["Description"]),
                       "price": (decimal.Decimal(shop["price"]),
                                 decimal.Decimal(str(erp["SalesPrice"])))}
            for name, value in values.items():
                assert got[name] == (value, value), \
                    f"seed {self.seed}: {kind} {key} {name}: expected {value!r} on both " \
                    f"sides, got webshop {got[name][0]!r}, ERP {got[name][1]!r}"


@contextlib.contextmanager
def _exported(variables: dict[str, str]):
    """``variables`` in the environment for the scenario only: a seed's keys must not stay
    behind for the tests that run after it in the same process."""
    before = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _linked(h: SyncHarness, pair: str) -> set[tuple[str, str]]:
    """(source id, target id) of the pair's committed links (none before the first run)."""
    store = load_config(h.config).link_store
    if not pathlib.Path(store.removeprefix("sqlite:///")).exists():
        return set()
    return {(link.source_id, link.target_id)
            for link in read_links(store, DATAFLOW).get(pair, []) if link.state != PENDING}


def _instant(text: str) -> datetime.datetime:
    """A system's modified time (ISO 8601, ``Z`` or an offset) as an aware instant."""
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))


def run_seed(seed: int, log=print, **options) -> None:
    """One seed's scenario in a temporary folder (``options``: see :class:`Campaign`)."""
    with tempfile.TemporaryDirectory(prefix=f"talksync-campaign-{seed}-") as workdir:
        Campaign(seed, pathlib.Path(workdir), log, **options).run()


def _parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            first, last = part.split("-")
            seeds.extend(range(int(first), int(last) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0-99", help="e.g. 0-99 or 3,17,42")
    parser.add_argument("--min-rounds", type=int, default=1,
                        help="rounds per seed at least (the `make test` subset: 2)")
    parser.add_argument("--kill-first-round", action="store_true",
                        help="SIGKILL each seed's first run while it writes (as the subset)")
    args = parser.parse_args(argv)
    options = {"min_rounds": args.min_rounds, "kill_first_round": args.kill_first_round}
    failed, started = [], time.monotonic()
    seeds = _parse_seeds(args.seeds)
    for seed in seeds:
        try:
            run_seed(seed, log=lambda m: None, **options)
            print(f"seed {seed}: ok", flush=True)
        except AssertionError as exc:
            failed.append(seed)
            print(f"seed {seed}: FAILED: {exc}", flush=True)
    passed = len(seeds) - len(failed)
    print(f"{passed} passed, {len(failed)} failed")
    print(f"campaign: {len(seeds)} seeds in {time.monotonic() - started:.0f} s; "
          f"failed seeds: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
