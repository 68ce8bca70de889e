"""A seeded fault campaign against the sandbox: faults, crashes and edits, then one clean run.

Each seed is a scenario of its own, reproducible from its number alone:

1. a fresh sandbox (its data from the seed) and a fresh link store;
2. a few rounds of: random edits on both systems (each entity is edited on one side only in
   the whole scenario, so the expected end state is known without modelling conflicts: before
   two records are first linked there is no snapshot, and the first-link rule lets the newer
   record win every property the sides disagree on), random faults in
   both systems (5xx and 429 errors, lost responses — committed, then the connection dropped —
   and latency), and a sync run that may be SIGKILLed at a random point;
3. the faults cleared and one clean run, after which:
   - every customer, product and order has exactly one counterpart under its match key;
   - every edit has reached both systems;
   - the clean run ended without dead letters (exit status 0);
   - a further run writes nothing.

Run a range of seeds: ``python -m tests.reliability.campaign --seeds 0-99`` (or ``make
reliability``); a failing seed is rerun alone with ``--seeds N``.
"""

from __future__ import annotations

import argparse
import dataclasses
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

from sandbox.server import Sandbox  # noqa: E402
from tests.conftest import SyncHarness  # noqa: E402
from tests.test_sync_customerp_customwebshop import _assert_one_to_one, _writes  # noqa: E402

_ROUNDS = (1, 3)              # faulty rounds per seed (inclusive range)
_EDITS = (2, 8)               # edits per round
_KILL_CHANCE = 0.4            # chance that a faulty run is killed mid-way
_PROGRESS_MARKERS = ("wrote", "committed", "read")


@dataclasses.dataclass
class Expectation:
    """What both systems must show at the end: (kind, match key) → {property: value}."""

    values: dict = dataclasses.field(default_factory=dict)

    def expect(self, kind: str, key: str, **values) -> None:
        self.values.setdefault((kind, key), {}).update(values)


class Campaign:
    """One seed's scenario."""

    def __init__(self, seed: int, workdir: pathlib.Path, log=print):
        self.seed = seed
        self.rng = random.Random(seed)
        self.workdir = workdir
        self.log = log
        self.expected = Expectation()
        self.counter = 0
        self.edited_on: dict = {}   # (kind, match key) -> the side it is edited on

    def run(self) -> None:
        with Sandbox(state_dir=self.workdir / "sandbox", base_port=0,
                     systems=("customwebshop", "customerp"), seed=self.seed) as sandbox:
            os.environ.update(sandbox.environ())
            h = SyncHarness(sandbox, self.workdir)
            for system in ("customwebshop", "customerp"):
                h.configure(system, max_retries=2, timeout_s=10)
            for round_no in range(self.rng.randint(*_ROUNDS)):
                self._clear_faults(h)     # edits are the users', not talksync's: no faults
                self._edit(h, self.rng.randint(*_EDITS))
                faults = self._faults(h)
                killed = self._faulty_run(h)
                self.log(f"seed {self.seed} round {round_no}: faults {faults}, "
                         f"{'killed' if killed else 'finished'}")
            self._clear_faults(h)
            status, report = h.run()
            assert status == 0, f"seed {self.seed}: the clean run left dead letters: {report}"
            _assert_one_to_one(h)
            self._check_edits(h)
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

    def _faulty_run(self, h: SyncHarness) -> bool:
        """A run under faults; returns whether it was killed."""
        if self.rng.random() >= _KILL_CHANCE:
            h.run()
            return False
        marker = self.rng.choice(_PROGRESS_MARKERS)
        after = self.rng.randint(1, 6)
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "run", "customerp-customwebshop",
             "--config", h.config], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        seen = 0
        try:
            for line in process.stderr:
                if f": {marker} " in line:
                    seen += 1
                    if seen >= after:
                        process.send_signal(signal.SIGKILL)
                        break
        finally:
            process.kill()
            process.wait(timeout=120)
        return process.returncode == -signal.SIGKILL

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


def run_seed(seed: int, log=print) -> None:
    with tempfile.TemporaryDirectory(prefix=f"talksync-campaign-{seed}-") as workdir:
        Campaign(seed, pathlib.Path(workdir), log).run()


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
    args = parser.parse_args(argv)
    failed, started = [], time.monotonic()
    seeds = _parse_seeds(args.seeds)
    for seed in seeds:
        try:
            run_seed(seed, log=lambda m: None)
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
