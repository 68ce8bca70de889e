"""All five systems of the sandbox with `talksync run --all` settled once: the harness of the
tests that follow a value from system to system through the webshop, the hub of the four
dataflows (tests/test_provenance_all.py)."""

from __future__ import annotations

import io
import json
import pathlib
from decimal import Decimal

import requests
import yaml

from connectors.stores import open_link_store
from pipelines import auth, cli
from sandbox import businesscentral as bc
from sandbox import businessnxt_model
from sandbox import exact as ex
from tests.conftest import SyncHarness, assert_counts_add_up
from tests.test_sandbox_businessnxt import Gql
from tests.test_sync_exact_customwebshop import consent_code

SYSTEMS = ("customwebshop", "customerp", "businesscentral", "businessnxt", "exact")
DATAFLOWS = ("customerp-customwebshop", "customwebshop-businesscentral",
             "customwebshop-businessnxt", "exact-customwebshop")
_EXACT_ROOT = f"/api/v1/{ex.DIVISION}"


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
        code = consent_code(sandbox)
        assert auth.auth_exact(self.config, "exact", stdin=io.StringIO(code + "\n"),
                               out=io.StringIO()) == "tokens/exact"
        self.gql = Gql(sandbox)
        self.bc = requests.Session()
        token = requests.post(bc.BusinessCentral.connector_settings(
            sandbox.root_url("businesscentral"))["token_url"], data={
                "grant_type": "client_credentials", "client_id": bc.CLIENT_ID,
                "client_secret": sandbox.api_key("businesscentral"), "scope": bc.SCOPE},
            timeout=10).json()["access_token"]
        self.bc.headers["Authorization"] = f"Bearer {token}"
        self.company = f"{sandbox.url('businesscentral')}/companies({bc.COMPANY_ID})"
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
            if all(self.phone(system, email) is not _ABSENT for system in SYSTEMS):
                return email

    # --- each system's phone number of a customer (by e-mail) -------------------------------
    def phones(self, email: str) -> dict[str, str | None]:
        return {system: self.phone(system, email) for system in SYSTEMS}

    def phone(self, system: str, email: str):
        row = self._row(system, email)
        if row is None:
            return _ABSENT
        return row[_PHONE_FIELDS[system]]

    def set_phone(self, system: str, email: str, phone: str) -> None:
        """The edit a person makes in ``system``'s own API."""
        row = self._row(system, email)
        if system == "customwebshop":
            self.patch_shop("customers", row["id"], {"phone": phone})
        elif system == "customerp":
            self.put_erp("Customers", row["CustomerNo"], {"Phone": phone})
        elif system == "businesscentral":
            response = self.bc.patch(f"{self.company}/customers({row['id']})",
                                     json={"phoneNumber": phone},
                                     headers={"If-Match": row["@odata.etag"]}, timeout=30)
            assert response.status_code == 200, response.text
        elif system == "businessnxt":
            answer = self.gql(
                "mutation($cid: Int!, $f: FilterExpression_Address, $v: Address_Input) { "
                "useCompany(no: $cid) { address_update(filter: $f, value: $v) "
                "{ affectedRows } } }", f={"addressNo": {"_eq": row["addressNo"]}},
                v={"phone": phone})
            assert "errors" not in answer, answer
        else:
            response = requests.put(
                f"{self.sandbox.root_url('exact')}{_EXACT_ROOT}/crm/Accounts(guid'{row['ID']}')",
                json={"Phone": phone}, headers={**self._exact_bearer(),
                                                 "Accept": "application/json"}, timeout=30)
            assert response.status_code in (200, 204), response.text

    def _row(self, system: str, email: str) -> dict | None:
        for row in self._rows(system):
            if str(row.get(_EMAIL_FIELDS[system]) or "").lower() == email:
                return row
        return None

    def _rows(self, system: str) -> list[dict]:
        if system == "customwebshop":
            return self.shop_all("customers")
        if system == "customerp":
            return self.list_all("customerp", "Customers")
        if system == "businesscentral":
            return json.loads(self.bc.get(f"{self.company}/customers", timeout=30).text,
                              parse_float=Decimal)["value"]
        if system == "businessnxt":
            return self.gql.rows("address", "addressNo emailAddress phone changedTimestamp")
        url = f"{self.sandbox.root_url('exact')}{_EXACT_ROOT}/crm/Accounts"
        rows = []
        while url:
            body = requests.get(url, headers={**self._exact_bearer(),
                                              "Accept": "application/json"},
                                timeout=30).json()["d"]
            rows += body["results"]
            url = body.get("__next")
        return rows

    def _exact_bearer(self) -> dict:
        with open_link_store(self.store_url) as store:
            entry = store.read_state("tokens/exact")
        return {"Authorization": f"Bearer {entry.value['access_token']}"}


_ABSENT = object()
_EMAIL_FIELDS = {"customwebshop": "email", "customerp": "Email", "businesscentral": "email",
                 "businessnxt": "emailAddress", "exact": "Email"}
_PHONE_FIELDS = {"customwebshop": "phone", "customerp": "Phone",
                 "businesscentral": "phoneNumber", "businessnxt": "phone", "exact": "Phone"}
assert businessnxt_model.TABLES["address"]   # the table the sandbox keeps NXT customers in
