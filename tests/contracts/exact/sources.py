"""The documents the contract tests take their requests and answers from: each test names its
own with ``@source(...)`` (checked by the package's conftest) and quotes the passage in its
docstring."""

import pytest

#: Exact's REST API reference: the list of resources, and one page per resource
REFERENCE = "https://start.exactonline.nl/docs/HlpRestAPIResources.aspx"


def reference_page(name: str) -> str:
    """A resource's page of Exact's REST API reference (``name`` as Exact spells it, e.g.
    ``CRMAccounts``); the copy in shared/specs/exact-online-rest-metadata-subset.json names
    the same pages."""
    return f"https://start.exactonline.nl/docs/HlpRestAPIResourcesDetails.aspx?name={name}"


_KB = "https://support.exactonline.com/community/s/knowledge-base#All-All-DNO-Content-"
#: Exact knowledge base, OAuth step 3 ("Get and use access tokens":
#: the token request and answer, 10-minute access tokens, no new token before 9 min 30 s, and
#: the early refresh "rejected with response code 401 and reason Access Token not expired",
#: quoted in ossobv/exactonline exactonline/api/autorefresh.py)
OAUTH_STEP3 = _KB + "oauth-eol-oauth-devstep3"
#: Exact knowledge base, OAuth step 4 (refresh tokens: every refresh returns a new one, old
#: ones are refused; Exact's mail quoted in picqer/exact-php-client#300)
OAUTH_STEP4 = _KB + "oauth-eol-oauth-dev-step4"
#: "Old refresh token used." and the single-use authorization code, valid 3 minutes
INVANTIVE_REFRESH = ("https://forums.invantive.com/t/"
                     "exact-online-error-message-old-refresh-token-used/2903")
#: Exact knowledge base "API limits": 60 calls a minute and 5,000 a day per company and app,
#: 429 beyond (quoted at https://docs.maesn.com/rate-limits); the X-RateLimit-* headers
#: (listed at https://forums.invantive.com/t/inzien-waardes-exact-online-kopteksten-voor-rate-limits/3102)
API_LIMITS = "Exact knowledge base 'API limits' (as quoted at https://docs.maesn.com/rate-limits)"
#: Exact knowledge base "Tips and Tricks" (REST API): paging of 60 with __next, Prefer:
#: return=representation, codes of 18 characters and the documented example requests
#: (mirrored at http://www.basvanbeek.nl/exact-online-tips/)
TIPS = "http://www.basvanbeek.nl/exact-online-tips/"
#: Exact knowledge base "OData | Best practices" and "API types to make your API calls more
#: efficient": $select, $filter literals guid'…' and datetime'…', $expand, $count and
#: $inlinecount, __next with $skiptoken=guid'…', bulk and sync 1,000 a call with $select
#: (a scraped copy is in the repository werkenmetai/Chef-Data)
ODATA_PRACTICES = ("Exact knowledge base 'OData | Best practices' (werkenmetai/Chef-Data "
                   "docs/knowledge/exact/scraped/2026-01-31-exactonline-odata-best-practices.md)")
#: OData v2 URI conventions ($orderby, $top, $skip, $inlinecount; unknown $ options)
ODATA_V2_URI = "https://www.odata.org/documentation/odata-version-2-0/uri-conventions/"
#: OData v2 overview, §6 "Primitive Data Types": literal forms (``1L``, ``1.5M``, ``1.5d``,
#: ``guid'…'``, ``datetime'…'``) and the arithmetic operators of $filter
ODATA_V2_TYPES = "https://www.odata.org/documentation/odata-version-2-0/overview/"
#: OData v2 JSON format (verbose): d, results, __metadata, __deferred, __next, __count
ODATA_V2_JSON = "https://www.odata.org/documentation/odata-version-2-0/json-format/"
#: Exact's error body, code usually empty ({"error": {"code": "", "message": {"lang": "",
#: "value": …}}}): python-exact-online README and Exact's own SDK
#: (exactonline/exactonline-api-dotnet-client src/ExactOnline.Client.Sdk/Helpers/ApiConnector.cs)
ERRORS = "https://github.com/exactonline/exactonline-api-dotnet-client"


def source(*documents: str) -> pytest.MarkDecorator:
    """The documentation a contract test takes its request and answer from."""
    return pytest.mark.source(*documents)
