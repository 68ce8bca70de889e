"""`talksync report RUN --html`: the page, rendered by a real headless Chromium.

First a run folder written here the way a run writes it (report.json, conflicts.jsonl,
dead_letters.jsonl): the page is opened by Debian's Chromium, and the DOM it built and its
screenshot are checked for the key elements: the chart's bars (and their lengths on screen),
the conflict rows with both sides' values and edit times, the dead letters with their reasons.

Then the pages of real runs against the sandbox (customerp-customwebshop): a run with a create,
edits both ways, a conflict and an update the ERP refuses; a run the circuit breaker holds; a
run that cannot reach the ERP. Each page must answer "what happened to my record": the record's
before → after, the conflict's two edit times, the exit status the command returned, and no
rows of zeros.
"""

from __future__ import annotations

import dataclasses
import datetime
import html.parser
import json
import os
import pathlib
import shutil
import subprocess
from decimal import Decimal

import pytest
from PIL import Image

from pipelines import cli, preflight
from tests.conftest import SyncHarness, group_by

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BLUE, ORANGE = (0x25, 0x63, 0xEB), (0xD9, 0x77, 0x06)   # bars to the target / to the source

REPORT = {
    "dataflow": "customerp-customwebshop", "mode": "sync", "run_id": "20261122T010203Z-abc123",
    "started_at": "2026-11-22T01:02:03+00:00", "finished_at": "2026-11-22T01:02:45+00:00",
    "duration_s": 42.25, "run_dir": "",
    "pairs": {
        "customer": {"read_source": 250, "read_target": 300, "created_in_target": 120,
                     "created_in_source": 60, "linked_by_match": 40, "updated_target": 14,
                     "updated_source": 20, "unchanged": 5, "conflicts": 1, "dead_letters": 2},
        "product": {"read_source": 200, "read_target": 200, "created_in_target": 30,
                    "created_in_source": 0, "linked_by_match": 30, "updated_target": 16,
                    "updated_source": 14, "unchanged": 0, "conflicts": 1, "dead_letters": 1}},
    "requests": {"customerp": 459, "customwebshop": 8}}
CONFLICTS = [
    {"run_id": REPORT["run_id"], "dataflow": REPORT["dataflow"], "pair": "product",
     "source_id": "IT-7", "target_id": "prd_7", "property": "name",
     "source_value": "ERP-navn, endret sist", "target_value": "<b>Kaffe & Te</b>",
     "winner": "source", "rule": "latest change wins",
     "source_modified": "2026-11-22T00:59:58.250000+00:00",
     "target_modified": "2026-11-22T01:59:58+01:00"},
    {"run_id": REPORT["run_id"], "dataflow": REPORT["dataflow"], "pair": "customer",
     "source_id": "C10002", "target_id": "cus_9", "property": "phone",
     "source_value": "+47 1", "target_value": "+47 2", "winner": "target",
     "rule": "latest change wins"},
]
LETTERS = [
    {"run_id": REPORT["run_id"], "dataflow": REPORT["dataflow"], "pair": "customer",
     "direction": "to_source", "system": "customwebshop", "entity": "customers",
     "entity_id": "cus_1", "stage": "write", "error_class": "transient", "status": 500,
     "message": "update in customerp failed: 500 unexpected server error"},
    {"run_id": REPORT["run_id"], "dataflow": REPORT["dataflow"], "pair": "customer",
     "direction": "read", "system": "customerp", "entity": "Customers", "entity_id": "C10001",
     "stage": "map", "error_class": "validation", "status": None,
     "message": "email (Email): 'not-an-address' is not an e-mail address"},
    {"run_id": REPORT["run_id"], "dataflow": REPORT["dataflow"], "pair": "product",
     "direction": "read", "system": "customerp", "entity": "Products", "entity_id": "IT-3",
     "stage": "map", "error_class": "validation", "status": None,
     "message": "stock_quantity (StockQty): 2.5 is not a whole number"},
]


class _Dom(html.parser.HTMLParser):
    """The elements of a dumped DOM: (tag, attributes, text directly inside, ancestors)."""

    def __init__(self):
        super().__init__()
        self.elements: list[dict] = []
        self._open: list[dict] = []

    def handle_starttag(self, tag, attrs):
        element = {"tag": tag, "attrs": dict(attrs), "text": "",
                   "parents": [e["tag"] for e in self._open],
                   "classes": set((dict(attrs).get("class") or "").split())}
        self.elements.append(element)
        if tag not in ("meta", "link", "br", "img", "input"):
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()["tag"] == tag:
                break

    def handle_data(self, data):
        for element in self._open:
            element["text"] += data

    def find(self, tag=None, css=None, **attrs):
        return [e for e in self.elements if (tag is None or e["tag"] == tag)
                and (css is None or css in e["classes"])
                and all(e["attrs"].get(k.replace("_", "-")) == v for k, v in attrs.items())]


def _run_folder(tmp_path: pathlib.Path) -> pathlib.Path:
    run_dir = tmp_path / "runs" / REPORT["run_id"]
    run_dir.mkdir(parents=True)
    (run_dir / "report.json").write_text(json.dumps({"dataflows": [REPORT]}))
    (run_dir / "conflicts.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONFLICTS))
    (run_dir / "dead_letters.jsonl").write_text("".join(json.dumps(d) + "\n" for d in LETTERS))
    return run_dir


def _chromium(page: pathlib.Path, tmp_path: pathlib.Path) -> tuple[str, pathlib.Path]:
    if not os.path.exists(CHROMIUM):
        if os.environ.get("TALKSYNC_CI"):
            pytest.fail("chromium is missing (.ci/run installs it: apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    shot = tmp_path / "page.png"
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars",
         "--force-device-scale-factor=1", "--window-size=1200,2200",
         f"--screenshot={shot}", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout, shot


def _longest_run(image: Image.Image, color) -> int:
    """The longest horizontal run of pixels of exactly ``color``: a bar's length on screen."""
    width, height = image.size
    pixels = image.load()
    best = 0
    for y in range(height):
        run = 0
        for x in range(width):
            run = run + 1 if pixels[x, y][:3] == color else 0
            best = max(best, run)
    return best


def test_report_page_renders_chart_conflicts_and_dead_letters_in_chromium(tmp_path, capsys):
    run_dir = _run_folder(tmp_path)
    page = tmp_path / "report.html"
    audit_dir = tmp_path / "audit"          # holds no events of this run
    assert cli.main(["report", str(run_dir), "--html", str(page),
                     "--audit-dir", str(audit_dir)]) == 0
    assert capsys.readouterr().out.strip() == str(page)
    source = page.read_text()
    assert "<script" not in source and "src=" not in source and "href=" not in source \
        and "url(" not in source and "@import" not in source       # nothing to fetch

    dom_text, shot = _chromium(page, tmp_path)
    dom = _Dom()
    dom.feed(dom_text)

    # the chart: one bar per pair and kind of write that happened, its value and its length
    bars = dom.find("rect", "bar")
    assert len(bars) == 2 * 7 - 1                     # not the product's 0 created in the ERP
    values = {(b["attrs"]["data-pair"], b["attrs"]["data-counter"]): int(b["attrs"]["data-value"])
              for b in bars}
    for pair, counts in REPORT["pairs"].items():
        for counter in ("created_in_target", "updated_target", "created_in_source",
                        "updated_source", "linked_by_match", "conflicts", "dead_letters"):
            assert values.get((pair, counter), 0) == counts[counter]
    widths = {(b["attrs"]["data-pair"], b["attrs"]["data-counter"]): float(b["attrs"]["width"])
              for b in bars}
    assert widths[("customer", "created_in_target")] == 420.0          # the largest count
    assert widths[("customer", "created_in_source")] == 210.0
    assert all(b["parents"][-1] == "g" and "svg" in b["parents"] for b in bars)

    # the counts table: no column of zeros (the product's created in source is one cell of a
    # column that is not all zeros); a report from before held_back and unreachable existed
    assert "held back" not in _headers(dom, "counts-table")

    # conflicts: both sides' values (escaped, not markup) and edit times, the winner marked
    rows = dom.find("tr", "conflict")
    assert len(rows) == 2
    first = _cells_of(dom, rows[0])
    assert [td["text"] for td in first] == [
        "product", "IT-7", "prd_7", "name", "ERP-navn, endret sist", "2026-11-22 00:59:58.250 UTC",
        "<b>Kaffe & Te</b>", "2026-11-22 00:59:58 UTC", "customerp", "latest change wins"]
    assert "winner" in first[4]["classes"] and "loser" in first[6]["classes"]
    assert not [e for e in dom.elements if e["tag"] == "b" and "table" in e["parents"]]
    second = _cells_of(dom, rows[1])
    assert "winner" in second[6]["classes"] and second[8]["text"] == "customwebshop"
    assert second[5]["text"] == second[7]["text"] == "unknown"    # written before times were

    # the status: dead letters, exit 3 (as `talksync run` returned)
    [status] = dom.find(id="exit-status")
    assert status["attrs"]["data-exit"] == "3"
    assert status["text"].startswith("finished with dead letters · exit status 3")
    assert "3 dead letters, retried on the next run" in status["text"]
    # the counters say records were written, the audit log has none of them: it says so
    assert dom.find(id="changes-table-empty")[0]["text"] == (
        f"274 writes counted, but the audit log ({audit_dir}) holds no events of this run")

    # dead letters with their reasons
    letters = dom.find("tr", "dead-letter")
    assert [[c["text"] for c in _cells_of(dom, row)][4] for row in letters] == [
        "cus_1", "C10001", "IT-3"]
    assert _cells_of(dom, letters[0])[-1]["text"] == LETTERS[0]["message"]
    assert _cells_of(dom, letters[0])[7]["text"] == "500"

    # requests per system and the duration
    assert {r["attrs"]["data-system"]: int(r["attrs"]["data-value"])
            for r in dom.find("rect", "request")} == REPORT["requests"]
    assert dom.find(id="duration")[0]["text"] == "42.2 s"
    assert dom.find(id="run-id")[0]["text"] == REPORT["run_id"]
    assert "started 2026-11-22 01:02:03 UTC · finished 2026-11-22 01:02:45 UTC" in dom_text

    # the screenshot: produced, not blank, and the bars drawn to scale
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 2200)
    assert len(image.resize((300, 550)).getcolors(1 << 20)) > 50        # not blank
    blue, orange = _longest_run(image, BLUE), _longest_run(image, ORANGE)
    assert abs(blue - 420) <= 2 and abs(orange - 210) <= 2, (blue, orange)


def _headers(dom: _Dom, table_id: str) -> list[str]:
    """The column headings of a table."""
    start = dom.elements.index(dom.find(id=table_id)[0])
    headers = []
    for element in dom.elements[start + 1:]:
        if element["tag"] == "tbody":
            break
        if element["tag"] == "th":
            headers.append(element["text"])
    return headers


def _cells_of(dom: _Dom, row: dict) -> list[dict]:
    """The cells of one table row, in order."""
    start = dom.elements.index(row)
    cells = []
    for element in dom.elements[start + 1:]:
        if element["tag"] == "tr":
            break
        if element["tag"] == "td":
            cells.append(element)
    return cells


def test_report_of_an_unknown_run_says_how_to_find_one(tmp_path, capsys):
    assert cli.main(["report", "no-such-run", "--html", str(tmp_path / "x.html"),
                     "--runs-dir", str(tmp_path)]) == 2
    assert "talksync runs" in capsys.readouterr().err


# --- pages of real runs against the sandbox -------------------------------------------------

SCRIPT_NAME = "Navn <script>alert('nettbutikk')</script> & co"


@dataclasses.dataclass
class _Scenario:
    """The runs of the scenario: (exit status, report section) each, and what was edited."""

    harness: SyncHarness
    edits: dict
    edited_between: tuple        # (before the edits, after them): where the edit times lie
    runs: dict = dataclasses.field(default_factory=dict)

    def page(self, name: str, tmp_path: pathlib.Path) -> tuple[_Dom, str]:
        """The page of one run (by `talksync report`), as Chromium built it, and its source."""
        _, section = self.runs[name]
        page = tmp_path / f"{name}.html"
        assert cli.main(["report", section["run_id"], "--html", str(page),
                         "--config", self.harness.config]) == 0
        dom_text, _ = _chromium(page, tmp_path)
        dom = _Dom()
        dom.feed(dom_text)
        return dom, page.read_text()


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """customerp-customwebshop: a first run; then a run with a webshop customer created in the
    ERP, an ERP price sent to the webshop, a product name edited on both sides (the ERP's later
    edit wins over a webshop name with markup in it) and a webshop phone the ERP refuses (exit
    3); then a run the circuit breaker holds (exit 1); then one that cannot reach the ERP."""
    from sandbox.server import Sandbox
    state = tmp_path_factory.mktemp("report-scenario")
    with pytest.MonkeyPatch.context() as env, Sandbox(
            state_dir=state / "sandbox", base_port=0, systems=("customwebshop", "customerp"),
            seed=42) as sandbox:
        for name, value in sandbox.environ().items():
            env.setenv(name, value)
        harness = SyncHarness(sandbox, state)
        first = harness.run("--pairs", "customer,product")
        assert first[0] == 0
        edits, edited_between = _edit_both_sides(harness)
        result = _Scenario(harness, edits, edited_between, {"first": first})
        result.runs["edited"] = harness.run("--pairs", "customer,product")

        harness.sandbox.set_faults("customerp")
        for sku, price in zip(edits["more_priced"], ("101.50", "202.75"), strict=True):
            harness.put_erp("Products", sku, {"SalesPrice": Decimal(price)})
        result.runs["held"] = harness.run("--pairs", "customer,product",
                                          "--max_updates_per_pair=1")

        harness.configure("customerp", base_url="http://127.0.0.1:9/erp/v1", max_retries=0,
                          timeout_s=2)
        # the ERP goes down after the run's pre-flight check found it answering: the pairs'
        # reads meet the outage (without the pass, the check stops the run before any pair)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(preflight, "preflight", lambda config, systems: [])
            result.runs["unreachable"] = harness.run("--pairs", "customer,product")
        yield result


def _edit_both_sides(harness: SyncHarness) -> tuple[dict, tuple]:
    shop_customers = group_by(harness.list_all("customwebshop", "customers"), "email", True)
    erp_customers = group_by(harness.list_all("customerp", "Customers"), "Email", True)
    shop_products = group_by(harness.list_all("customwebshop", "products"), "sku")
    email = sorted(set(shop_customers) & set(erp_customers))[0]
    priced, renamed, *more_priced = sorted(shop_products)[:4]
    edits = {"shop_customer": shop_customers[email][0], "erp_customer": erp_customers[email][0],
             "priced": priced, "old_price": Decimal(shop_products[priced][0]["price"]),
             "priced_shop_id": shop_products[priced][0]["id"], "renamed": renamed,
             "renamed_shop_id": shop_products[renamed][0]["id"], "more_priced": more_priced}
    before = datetime.datetime.now(datetime.UTC)
    edits["new"] = harness.post("customwebshop", "customers", {
        "email": "report.page@example.no", "first_name": "Ada", "last_name": "Rapport",
        "phone": "+47 400 11 222"})
    harness.put_erp("Products", priced, {"SalesPrice": Decimal("777.25")})
    harness.patch_shop("customers", edits["shop_customer"]["id"], {"phone": "+47 999 88 777"})
    harness.patch_shop("products", edits["renamed_shop_id"], {"name": SCRIPT_NAME})
    harness.put_erp("Products", renamed, {"Description": "Navn i ERP, sist endret"})
    after = datetime.datetime.now(datetime.UTC)
    # every update the ERP receives fails (a create is a POST and goes through)
    harness.sandbox.set_faults("customerp", error_rate=1.0, status=500, only=["PUT"], seed=3)
    harness.configure("customerp", max_retries=0)
    return edits, (before, after)


def _record(dom: _Dom, **attrs) -> tuple[dict, dict]:
    """A record's block of the changes table and ``{property: [its cells' texts]}``."""
    [block] = dom.find("tbody", "record", **attrs)
    start = dom.elements.index(block)
    rows, current = {}, None
    for element in dom.elements[start + 1:]:
        if element["tag"] == "tbody":
            break
        if element["tag"] == "tr":
            current = rows.setdefault(element["attrs"].get("data-property"), [])
        elif element["tag"] == "td" and current is not None:
            current.append(element["text"])
    rows.pop(None, None)
    return block, rows


def _no_zero_rows(dom: _Dom) -> None:
    """No pair of only zeros, no counter column of only zeros, no zero card or bar."""
    headers = _headers(dom, "counts-table")
    rows = [[c["text"] for c in _cells_of(dom, row)] for row in dom.find("tr", "pair-row")]
    assert rows and all(any(int(v) for v in row[1:]) for row in rows), rows
    for column in range(1, len(headers)):
        assert any(int(row[column]) for row in rows), headers[column]
    assert all(int(b["attrs"]["data-value"]) > 0 for b in dom.find("rect", "bar"))
    cards = [card["text"][:-len(card["attrs"]["data-card"])] for card in dom.find("div", "card")]
    assert cards and all(int(count) > 0 for count in cards), cards


def test_report_of_a_real_run_shows_each_records_before_and_after_and_both_edit_times(
        scenario, tmp_path):
    status, section = scenario.runs["edited"]
    edits = scenario.edits
    dom, source = scenario.page("edited", tmp_path)

    # the status the command returned: dead letters, exit 3, and why
    assert status == 3
    [badge] = dom.find(id="exit-status")
    assert badge["attrs"]["data-exit"] == "3"
    assert badge["text"].startswith("finished with dead letters · exit status 3")
    assert [li["text"] for li in dom.find("li", "dead")] == [
        "1 dead letter, retried on the next run (below)"]
    assert not dom.find("li", "held") and not dom.find("li", "unreachable")

    # the ERP price, sent to the webshop: before → after, whence and why
    _, rows = _record(dom, data_operation="update", data_id=edits["priced_shop_id"])
    property_, before, arrow, after, why = rows["price"]
    assert (Decimal(before), arrow, Decimal(after), why) == (
        edits["old_price"], "→", Decimal("777.25"), "from customerp; changed in source")
    # the conflict's winner overwrote the webshop's name, markup and all, shown as text
    _, rows = _record(dom, data_operation="update", data_id=edits["renamed_shop_id"])
    assert rows["name"] == [
        "name", SCRIPT_NAME, "→", "Navn i ERP, sist endret",
        "from customerp; conflict: latest change wins"]
    # the new webshop customer, created in the ERP
    block, rows = _record(dom, data_operation="create", data_system="customerp")
    assert edits["new"]["id"] in block["text"] and "created in customerp" in block["text"]
    assert rows["email"][1:4] == ["(new)", "→", "report.page@example.no"]
    assert rows["phone"][1:4] == ["(new)", "→", "+47 400 11 222"]
    # the refused phone update is no change, only a dead letter
    assert not dom.find("tbody", "record", data_id=edits["shop_customer"]["id"])
    assert not dom.find("tbody", "record", data_id=edits["erp_customer"]["CustomerNo"])
    [letter] = dom.find("tr", "dead-letter")
    assert "update in customerp failed" in _cells_of(dom, letter)[-1]["text"]

    # the conflict: both values, both edit times (the ERP's later: it won), the policy
    [row] = dom.find("tr", "conflict")
    cells = [c["text"] for c in _cells_of(dom, row)]
    assert cells[:5] == ["product", edits["renamed"], edits["renamed_shop_id"], "name",
                         "Navn i ERP, sist endret"]
    assert cells[6] == SCRIPT_NAME and cells[8:] == ["customerp", "latest change wins"]
    erp_edited, shop_edited = (_utc(cells[5]), _utc(cells[7]))
    low, high = (moment.replace(microsecond=moment.microsecond // 1000 * 1000)
                 for moment in scenario.edited_between)
    assert low <= shop_edited < erp_edited <= high, (low, shop_edited, erp_edited, high)

    # escaped everywhere: the name with <script> in it is text, never an element
    assert not dom.find("script") and "<script>" not in source
    assert "&lt;script&gt;alert(&#x27;nettbutikk&#x27;)&lt;/script&gt; &amp; co" in source
    # nothing to fetch, no secrets, no rows of zeros
    assert "src=" not in source and "href=" not in source and "url(" not in source
    for system in ("customwebshop", "customerp"):
        assert scenario.harness.sandbox.api_key(system) not in source
    _no_zero_rows(dom)
    assert "held back" not in _headers(dom, "counts-table")
    assert section["pairs"]["product"]["held_back"] == 0


def test_report_of_a_held_run_names_the_held_pair_and_exit_1(scenario, tmp_path):
    status, section = scenario.runs["held"]
    dom, _ = scenario.page("held", tmp_path)

    assert status == 1
    [badge] = dom.find(id="exit-status")
    assert badge["attrs"]["data-exit"] == "1"
    assert badge["text"].startswith("failed · exit status 1")
    [held] = dom.find("li", "held", data_pair="product")
    assert "pair product: 2 updates planned, over the limit of 1" in held["text"]
    assert "--confirm_mass_changes" in held["text"]
    # the customer pair went on: the phone the ERP refused last run arrives now
    edits = scenario.edits
    _, rows = _record(dom, data_operation="update", data_id=edits["erp_customer"]["CustomerNo"])
    assert rows["phone"] == ["phone", edits["erp_customer"]["Phone"] or "(empty)", "→",
                             "+47 999 88 777",
                             "from customwebshop; changed in target"]
    assert not dom.find("tbody", "record", data_pair="product")
    assert "held back" in _headers(dom, "counts-table")
    assert dom.find(id="conflicts-table-empty")[0]["text"] == "no conflicts"
    _no_zero_rows(dom)


def test_report_of_a_run_that_could_not_reach_the_erp_says_so_with_exit_1(scenario, tmp_path):
    status, section = scenario.runs["unreachable"]
    dom, _ = scenario.page("unreachable", tmp_path)

    assert status == 1 and section["unreachable"]
    [badge] = dom.find(id="exit-status")
    assert badge["attrs"]["data-exit"] == "1"
    [unreachable] = dom.find("li", "unreachable")
    assert unreachable["attrs"]["data-system"] == "customerp"
    assert unreachable["text"].startswith("customerp could not be reached")
    assert dom.find(id="changes-table-empty")[0]["text"] == "no records created or updated"
    # nothing written: the chart has only the pairs' dead letters (the reads that failed),
    # which do not make it exit 3: a failure outweighs them
    assert {b["attrs"]["data-counter"] for b in dom.find("rect", "bar")} == {"dead_letters"}
    assert dom.find("li", "dead") and not dom.find("li", "held")
    _no_zero_rows(dom)


def _utc(shown: str) -> datetime.datetime:
    """A time as the page shows it (``2026-11-22 01:02:03.250 UTC``)."""
    return datetime.datetime.strptime(shown, "%Y-%m-%d %H:%M:%S.%f UTC").replace(
        tzinfo=datetime.UTC)


def test_the_exit_status_is_the_gravest_of_the_runs_whatever_their_order():
    from pipelines import exit_status
    ok = {"pairs": {"customer": {"dead_letters": 0, "held_back": 0}}, "unreachable": {}}
    dead = {"pairs": {"customer": {"dead_letters": 2, "held_back": 0}}, "unreachable": {}}
    held = {"pairs": {"customer": {"dead_letters": 2, "held_back": 5}}, "unreachable": {}}
    down = {"pairs": {"customer": {"dead_letters": 1}}, "unreachable": {"customerp": 3}}
    statuses = [exit_status.section_status(s) for s in (ok, dead, held, down)]
    assert statuses == [cli.EXIT_OK, cli.EXIT_DEAD_LETTERS, cli.EXIT_FAILED, cli.EXIT_FAILED]
    assert exit_status.combined([cli.EXIT_FAILED, cli.EXIT_DEAD_LETTERS]) == cli.EXIT_FAILED
    assert exit_status.combined([cli.EXIT_DEAD_LETTERS, cli.EXIT_FAILED]) == cli.EXIT_FAILED
    assert exit_status.combined([cli.EXIT_OK, cli.EXIT_DEAD_LETTERS]) == cli.EXIT_DEAD_LETTERS
    assert exit_status.combined([]) == cli.EXIT_OK
