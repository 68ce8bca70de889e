"""People at work in the sandbox's systems: a customer's phone number read and edited the way a
person's screen does it, through each emulator's own API and credentials (never through
talksync). The demo edits a customer in two systems with it and shows where each value ended
up; the end-to-end tests that follow one person's edit through every system use it too.

Customers are found by e-mail address (the match key of every customer pair). Exact has no
consent of its own here: the caller passes the access token to use (``exact_token``).

Any record of the webshop and the ERP is read, created and edited the same way
(:meth:`People.records`, :meth:`People.create`, :meth:`People.edit`): the end-to-end tests'
harness (tests/conftest.py) acts through these.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import requests

from sandbox import businesscentral as bc
from sandbox import businessnxt as bnxt
from sandbox import exact as ex

#: every system's field names of a customer's e-mail address and phone number
EMAIL_FIELDS = {"customwebshop": "email", "customerp": "Email", "businesscentral": "email",
                "businessnxt": "emailAddress", "exact": "Email"}
PHONE_FIELDS = {"customwebshop": "phone", "customerp": "Phone",
                "businesscentral": "phoneNumber", "businessnxt": "phone", "exact": "Phone"}
#: a customer a system does not have (not the same as one without a phone number)
ABSENT = object()
_TIMEOUT_S = 30
_EXACT_ROOT = f"/api/v1/{ex.DIVISION}"


def approve_exact(sandbox: Any) -> str:
    """A person approving talksync's access on the Exact emulator's consent page: the code the
    page hands the browser in its redirect (what `talksync auth exact` asks for)."""
    settings = ex.ExactOnline.connector_settings(sandbox.root_url("exact"))
    response = requests.get(f"{sandbox.url('exact')}/oauth2/auth", params={
        "client_id": ex.CLIENT_ID, "redirect_uri": settings["redirect_uri"],
        "response_type": "code"}, allow_redirects=False, timeout=_TIMEOUT_S)
    if response.status_code != 302:
        raise RuntimeError(f"exact: the consent page answered HTTP {response.status_code}")
    query = urllib.parse.urlsplit(response.headers["Location"]).query
    return urllib.parse.parse_qs(query)["code"][0]


class People:
    """The people who use the sandbox's systems (``sandbox``: a started
    :class:`~sandbox.server.Sandbox`); Business NXT's customers in its ``address`` table."""

    def __init__(self, sandbox: Any, exact_token: Callable[[], str] | None = None):
        self.sandbox = sandbox
        self._exact_token = exact_token
        self._bc: requests.Session | None = None
        self._nxt: requests.Session | None = None

    # --- reading -----------------------------------------------------------------------------
    def phones(self, email: str) -> dict[str, Any]:
        """The customer's phone number in each system of the sandbox (:data:`ABSENT` where
        the system has no such customer)."""
        return {system: self.phone(system, email) for system in self.sandbox.systems}

    def phone(self, system: str, email: str) -> Any:
        row = self.customer(system, email)
        return ABSENT if row is None else row.get(PHONE_FIELDS[system])

    def customer(self, system: str, email: str) -> dict[str, Any] | None:
        """The system's customer with this e-mail address (any case), as its API shows it."""
        wanted = email.lower()
        for row in self.customers(system):
            if str(row.get(EMAIL_FIELDS[system]) or "").lower() == wanted:
                return row
        return None

    def customers(self, system: str) -> list[dict[str, Any]]:
        """Every customer of the system (the webshop's live ones), through its list API."""
        if system == "customwebshop":
            return [row for row in self.records(system, "customers") if not row.get("deleted")]
        if system == "customerp":
            return self.records(system, "Customers")
        if system == "businesscentral":
            return self._bc_rows()
        if system == "businessnxt":
            return self._nxt_rows()
        if system == "exact":
            return self._exact_rows()
        raise ValueError(f"no such system in the sandbox: {system!r}")

    # --- editing -----------------------------------------------------------------------------
    def set_phone(self, system: str, email: str, phone: str) -> None:
        """The edit a person makes in ``system``: the customer's phone number."""
        row = self.customer(system, email)
        if row is None:
            raise LookupError(f"{system} has no customer {email}")
        if system == "customwebshop":
            self.edit(system, "customers", row["id"], {"phone": phone})
        elif system == "customerp":
            self.edit(system, "Customers", row["CustomerNo"], {"Phone": phone})
        elif system == "businesscentral":
            _ok(self._bc_session().patch(
                f"{self._bc_company()}/customers({row['id']})", json={"phoneNumber": phone},
                headers={"If-Match": row["@odata.etag"]}, timeout=_TIMEOUT_S))
        elif system == "businessnxt":
            self._graphql("mutation($cid: Int!, $f: FilterExpression_Address, $v: Address_Input) "
                          "{ useCompany(no: $cid) { address_update(filter: $f, value: $v) "
                          "{ affectedRows } } }",
                          f={"addressNo": {"_eq": row["addressNo"]}}, v={"phone": phone})
        else:
            _ok(requests.put(f"{self.sandbox.root_url('exact')}{_EXACT_ROOT}/crm/Accounts"
                             f"(guid'{row['ID']}')", json={"Phone": phone},
                             headers=self._exact_headers(), timeout=_TIMEOUT_S))

    # --- any record of the webshop and the ERP ----------------------------------------------
    def records(self, system: str, resource: str) -> list[dict[str, Any]]:
        """Every record of ``resource`` (the webshop's soft-deleted ones too), page by page
        through the system's own list endpoint (``customwebshop`` or ``customerp``)."""
        if system == "customwebshop":
            return self._webshop_rows(resource)
        if system == "customerp":
            return self._erp_rows(resource)
        raise ValueError(f"records of {system!r}: only customwebshop and customerp")

    def record(self, system: str, resource: str, key: str) -> requests.Response:
        """The system's answer to reading one record (a 404 too: some tests expect one)."""
        return requests.get(f"{self.sandbox.url(system)}/{resource}/{key}",
                            headers=self._key_headers(system), timeout=_TIMEOUT_S)

    def create(self, system: str, resource: str, body: dict[str, Any]) -> dict[str, Any]:
        """A new record, as a person enters it; the record as the system stored it."""
        return _ok(requests.post(f"{self.sandbox.url(system)}/{resource}", data=_json(body),
                                 headers=self._json_headers(system), timeout=_TIMEOUT_S),
                   expected=201).json()

    def edit(self, system: str, resource: str, key: str,
             changes: dict[str, Any]) -> dict[str, Any]:
        """A person's edit of one record: the webshop takes the changed fields (PATCH), the ERP
        takes them as a PUT; the record as the system stored it."""
        send = requests.patch if system == "customwebshop" else requests.put
        return _ok(send(f"{self.sandbox.url(system)}/{resource}/{key}", data=_json(changes),
                        headers=self._json_headers(system), timeout=_TIMEOUT_S),
                   expected=200).json()

    def delete(self, system: str, resource: str, key: str) -> None:
        """A person deleting one record (the webshop keeps it, marked deleted)."""
        _ok(requests.delete(f"{self.sandbox.url(system)}/{resource}/{key}",
                            headers=self._key_headers(system), timeout=_TIMEOUT_S))

    # --- each system's API -------------------------------------------------------------------
    def _key_headers(self, system: str) -> dict[str, str]:
        key = self.sandbox.api_key(system)
        return {"X-Api-Key": key} if system == "customwebshop" else {"Authorization":
                                                                     f"ApiKey {key}"}

    def _json_headers(self, system: str) -> dict[str, str]:
        return {**self._key_headers(system), "Content-Type": "application/json"}

    def _webshop_rows(self, resource: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        token = None
        while True:
            params = {"page_size": 500, **({"page_token": token} if token else {})}
            body = _ok(requests.get(f"{self.sandbox.url('customwebshop')}/{resource}",
                                    params=params, headers=self._key_headers("customwebshop"),
                                    timeout=_TIMEOUT_S)).json()
            rows += body["data"]
            token = body.get("next_page_token")
            if not token:
                return rows

    def _erp_rows(self, resource: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            body = _ok(requests.get(f"{self.sandbox.url('customerp')}/{resource}",
                                    params={"offset": len(rows), "limit": 1000},
                                    headers=self._key_headers("customerp"),
                                    timeout=_TIMEOUT_S)).json()
            rows += body["items"]
            if len(rows) >= body["total"] or not body["items"]:
                return rows

    def _bc_session(self) -> requests.Session:
        if self._bc is None:
            settings = bc.BusinessCentral.connector_settings(
                self.sandbox.root_url("businesscentral"))
            token = _ok(requests.post(settings["token_url"], data={
                "grant_type": "client_credentials", "client_id": bc.CLIENT_ID,
                "client_secret": self.sandbox.api_key("businesscentral"), "scope": bc.SCOPE},
                timeout=_TIMEOUT_S)).json()["access_token"]
            self._bc = requests.Session()
            self._bc.headers["Authorization"] = f"Bearer {token}"
        return self._bc

    def _bc_company(self) -> str:
        return f"{self.sandbox.url('businesscentral')}/companies({bc.COMPANY_ID})"

    def _bc_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self._bc_company()}/customers"
        while url:
            body = json.loads(_ok(self._bc_session().get(url, timeout=_TIMEOUT_S)).text,
                              parse_float=Decimal)
            rows += body["value"]
            url = body.get("@odata.nextLink")
        return rows

    def _graphql(self, query: str, **variables: Any) -> dict[str, Any]:
        if self._nxt is None:
            token = _ok(requests.post(self.sandbox.root_url("businessnxt") + bnxt.TOKEN_PATH,
                                      data={"grant_type": "client_credentials",
                                            "client_id": bnxt.CLIENT_ID,
                                            "client_secret": self.sandbox.api_key("businessnxt"),
                                            "scope": bnxt.SCOPE, "tenant_id": bnxt.TENANT_ID},
                                      timeout=_TIMEOUT_S)).json()["access_token"]
            self._nxt = requests.Session()
            self._nxt.headers["Authorization"] = f"Bearer {token}"
        answer = json.loads(_ok(self._nxt.post(
            self.sandbox.url("businessnxt"),
            json={"query": query, "variables": {"cid": bnxt.COMPANY_NO, **variables}},
            timeout=_TIMEOUT_S)).text, parse_float=Decimal)
        if answer.get("errors"):
            raise RuntimeError(f"businessnxt: {answer['errors']}")
        return dict(answer["data"])

    def _nxt_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = None
        while True:
            page = self._graphql(
                "query($cid: Int!, $after: String) { useCompany(no: $cid) { address(first: 100, "
                "after: $after) { pageInfo { hasNextPage endCursor } items { addressNo "
                "emailAddress phone changedTimestamp } } } }", after=after)["useCompany"]["address"]
            rows += page["items"]
            if not page["pageInfo"]["hasNextPage"]:
                return rows
            after = page["pageInfo"]["endCursor"]

    def _exact_headers(self) -> dict[str, str]:
        if self._exact_token is None:
            raise RuntimeError("exact: no access token to act with (pass exact_token)")
        return {"Authorization": f"Bearer {self._exact_token()}", "Accept": "application/json"}

    def _exact_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        url: str | None = f"{self.sandbox.root_url('exact')}{_EXACT_ROOT}/crm/Accounts"
        while url:
            body = _ok(requests.get(url, headers=self._exact_headers(),
                                    timeout=_TIMEOUT_S)).json()["d"]
            rows += body["results"]
            url = body.get("__next")
        return rows


def _json(body: dict[str, Any]) -> str:
    """JSON of a record; a ``Decimal`` as a JSON number (the ERP wants numbers for amounts)."""
    return json.dumps(body, default=_number, allow_nan=False)


def _number(value: Any) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _ok(response: requests.Response, expected: int | None = None) -> requests.Response:
    """The response, if the system did what was asked (answered ``expected``, or any 2xx)."""
    failed = response.status_code >= 300 if expected is None else (
        response.status_code != expected)
    if failed:
        raise RuntimeError(f"{response.request.method} {response.url}: HTTP "
                           f"{response.status_code} {response.text[:300]}")
    return response
