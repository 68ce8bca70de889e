"""Contracts of the answers around the data: authentication, the error shape, batches, and what
the real service has that the emulator does not (refused in the GraphQL error shape)."""

from __future__ import annotations

import requests

from sandbox import businessnxt as bnxt


def test_client_credentials_token_with_tenant(sandbox, nxt):
    """https://docs.vismasoftware.no/businessnxtapi/authentication/services and
    docs.connect.visma.com "Service Applications": ``POST /connect/token`` with
    ``grant_type=client_credentials``, the scope ``business-graphql-service-api:access-group-
    based`` and ``tenant_id``; the answer ``access_token``, ``expires_in``, ``token_type``."""
    answer = requests.post(nxt.token_url, data=nxt.token_form(), timeout=10)
    assert answer.status_code == 200
    assert {"access_token", "expires_in", "token_type"} <= set(answer.json())
    assert answer.json()["token_type"] == "Bearer"
    without_tenant = requests.post(nxt.token_url, data={**nxt.token_form(), "tenant_id": ""},
                                   timeout=10)
    assert without_tenant.status_code == 400


def test_a_failed_authorization_is_nginx_401_html(sandbox):
    """https://docs.vismasoftware.no/businessnxtapi/features/errors: no authorization header
    or an expired token → 401 and nginx's HTML page."""
    answer = requests.post(sandbox.url("businessnxt"), json={"query": "{ __typename }"},
                           timeout=10)
    assert answer.status_code == 401 and answer.headers["Content-Type"].startswith("text/html")
    assert "<title>401 Authorization Required</title>" in answer.text and "nginx" in answer.text


def test_errors_of_a_field_come_with_http_200_data_and_errors(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/errors: status 200; ``errors``
    with the message and ``data`` with the failed field null (the unknown company example)."""
    response = nxt.post({"query": "query($cid: Int!) { useCompany(no: $cid) { "
                                  "generalLedgerAccount: associate { totalCount } } }",
                         "variables": {"cid": 1234567}})
    assert response.status_code == 200
    assert response.json() == {
        "errors": [{"message": "Error: Could not get authorize user using VismaNetCompanyId: "
                               "1234567. Description: External integration error. Status: 18.",
                    "locations": [{"line": 1, "column": 21}], "path": ["useCompany"]}],
        "data": {"useCompany": None}}


def test_validation_errors_name_graphql_net_rule_location_and_code(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/errors: the ``totalRows``
    example: "GraphQL.Validation.Errors.FieldsOnCorrectTypeError: Cannot query field
    'totalRows' on type ... Did you mean 'totalCount'?", ``locations``, ``extensions.code``
    ``FIELDS_ON_CORRECT_TYPE``."""
    answer = nxt("query read($cid: Int!) {\n  useCompany(no: $cid) {\n    associate {\n"
                 "      totalRows\n    }\n  }\n}")
    [error] = answer["errors"]
    assert error["message"] == (
        "GraphQL.Validation.Errors.FieldsOnCorrectTypeError: Cannot query field 'totalRows' on "
        "type 'Query_UseCompany_Associate_Connection'. Did you mean 'totalCount'?")
    assert error["locations"] == [{"line": 4, "column": 7}]
    assert error["extensions"] == {"code": "FIELDS_ON_CORRECT_TYPE",
                                   "codes": ["FIELDS_ON_CORRECT_TYPE"]}
    assert "data" not in answer


def test_a_batch_is_an_array_answered_by_an_array(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/batches: a JSON array of requests
    is answered, after all have run, by an array of results in the same order."""
    one = {"query": "query($cid: Int!) { useCompany(no: $cid) { associate(first: 1) "
                    "{ items { associateNo } } } }", "variables": {"cid": bnxt.COMPANY_NO}}
    two = {"query": "{ availableCompanies { totalCount } }"}
    answers = nxt.post([one, two]).json()
    assert answers[0]["data"]["useCompany"]["associate"]["items"] == [{"associateNo": 1}]
    assert answers[1]["data"]["availableCompanies"]["totalCount"] == 1


def test_a_batch_holds_at_most_32_requests(nxt):
    """Release notes 2023-07-20 and 2024-05-23 "Batch requests": at most 32 operations."""
    one = {"query": "{ availableCompanies { totalCount } }"}
    assert len(nxt.post([one] * 32).json()) == 32
    assert "maximum is 32" in nxt.post([one] * 33).json()["errors"][0]["message"]


def test_what_the_emulator_lacks_fails_validation_in_the_error_shape(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/schema/queries/: the real service has
    grouping, ``distinct``, ``useCustomer`` and ``useModel``; the emulator does not, and
    answers each in the GraphQL error shape with GraphQL.NET's code, never with data."""
    for query, code in [
            ("{ useModel { tables { tableNo identifier } } }", "FIELDS_ON_CORRECT_TYPE"),
            ("{ useCustomer(no: 1) { __typename } }", "FIELDS_ON_CORRECT_TYPE"),
            ("query($cid: Int!) { useCompany(no: $cid) { associate(groupBy: [{countryNo: "
             "DEFAULT}]) { totalCount } } }", "KNOWN_ARGUMENT_NAMES"),
            ("query($cid: Int!) { useCompany(no: $cid) { associate(distinct: true) "
             "{ totalCount } } }", "KNOWN_ARGUMENT_NAMES")]:
        answer = nxt(query)
        assert "data" not in answer, query
        assert answer["errors"][0]["extensions"]["code"] == code, answer


def test_each_refusal_names_its_graphql_net_rule(nxt):
    """https://docs.vismasoftware.no/businessnxtapi/features/errors: validation errors carry
    the rule in the message and its code in ``extensions`` (the codes beyond the documented
    ``FIELDS_ON_CORRECT_TYPE`` are GraphQL.NET's own)."""
    for query, code in [
            ("{ availableCompanies(sortOrder: ASC) { totalCount } }", "KNOWN_ARGUMENT_NAMES"),
            ("query($cid: Int!) { useCompany(no: $cid) @export(as: \"x\") { __typename } }",
             "KNOWN_DIRECTIVES"),
            ("mutation($cid: Int!) { useCompany(no: $cid) { associate_create(values: [{name: "
             "\"X\", _suggest: [\"customerNo\"]}]) { affectedRows } } }",
             "ARGUMENTS_OF_CORRECT_TYPE"),
            ("query($cid: Int!) { useCompany(no: $cid) { associate(first: \"ten\") "
             "{ totalCount } } }", "ARGUMENTS_OF_CORRECT_TYPE"),
            ("{ useCompany { __typename } }", "PROVIDED_REQUIRED_ARGUMENTS"),
            ("query($cid: String) { useCompany(no: $cid) { __typename } }",
             "VARIABLES_IN_ALLOWED_POSITION"),
            ("{ useCompany(no: 1) { associate { totalCount }", "SYNTAX_ERROR")]:
        [error, *_] = nxt(query)["errors"]
        assert error["extensions"]["code"] == code, (query, error)
    answer = nxt("query($cid: Int!) { useCompany(no: $cid) { __typename } }", cid="x")
    assert answer["errors"][0]["extensions"]["code"] == "INVALID_VALUE"
