"""The shared HTTP layer (connectors.http, .errors, .wire) against a real local HTTP server
with scripted answers."""

import dataclasses
import datetime
import decimal
import email.utils
import http.server
import json
import socket
import threading
import time

import pytest

from connectors import errors, secrets, wire
from connectors import http as talkhttp
from connectors.errors import (
    ApiError,
    CredentialsRefusedError,
    PermanentApiError,
    PreconditionFailedError,
    RateLimitedError,
    TransientApiError,
)

SECRET = "s3cr3t-api-key-0123456789"


@dataclasses.dataclass
class Answer:
    """One scripted answer: a status with a body, or ``drop`` (close without answering)."""

    status: int = 200
    body: object = dataclasses.field(default_factory=dict)
    headers: dict = dataclasses.field(default_factory=dict)
    drop: bool = False
    hold: bool = False      # wait (until the test ends) instead of answering


DROP = Answer(drop=True)


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict
    body: bytes


class ScriptedServer:
    """A local HTTP server answering each request with the next scripted :class:`Answer`."""

    def __init__(self):
        self.answers: list[Answer] = []
        self.seen: list[Seen] = []
        self.release = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                server.seen.append(Seen(self.command, self.path, dict(self.headers), body))
                answer = server.answers.pop(0) if server.answers else Answer()
                if answer.hold:
                    server.release.wait(10)
                if answer.drop or answer.hold:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                text = (answer.body if isinstance(answer.body, str)
                        else json.dumps(answer.body)).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/api"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()

    def script(self, *answers: Answer) -> None:
        self.answers.extend(answers)

    def close(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def server():
    scripted = ScriptedServer()
    yield scripted
    scripted.close()


class FakeTime:
    """An injected clock and sleep: sleeping records the wait and moves the clock on."""

    def __init__(self):
        self.now = 1000.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time():
    return FakeTime()


def client(server, fake_time, **kwargs) -> talkhttp.HttpClient:
    kwargs.setdefault("sleep", fake_time.sleep)
    kwargs.setdefault("clock", fake_time.clock)
    return talkhttp.HttpClient(server.url, system="shop", **kwargs)


def error_body(message, code="bad"):
    return {"error": {"code": code, "message": message}}


# --- retries ---------------------------------------------------------------------------------

def test_retries_503_then_succeeds_with_capped_jittered_backoff(server, fake_time):
    server.script(Answer(503, error_body("busy")), Answer(503, error_body("busy")),
                  Answer(200, {"ok": True}))
    http = client(server, fake_time)
    response = http.request("GET", "/customers", params={"page_size": 5})
    assert response.status == 200 and response.data == {"ok": True}
    assert http.request_count == 3 and len(server.seen) == 3
    assert server.seen[0].path == "/api/customers?page_size=5"
    assert len(fake_time.waits) == 2
    for attempt, wait in enumerate(fake_time.waits):
        assert 0 <= wait <= talkhttp._BASE_BACKOFF_S * 2 ** attempt


def test_the_first_backoff_is_the_systems_retry_backoff_s_setting(server, fake_time):
    """A system's ``retry_backoff_s`` bounds the first wait (then doubling), as ``max_retries``
    bounds the retries: the fault campaign's runs, each a process of its own, read it from
    the config. Waits of up to 4 s under the client's own 0.5 s show the bound applies."""
    from core.model import SystemConfig
    config = SystemConfig("shop", "customwebshop", server.url,
                          settings={"retry_backoff_s": "0.001", "max_retries": 3})
    server.script(*[Answer(503, error_body("busy"))] * 3, Answer(200, {"ok": True}))
    http = talkhttp.HttpClient.from_config(config, sleep=fake_time.sleep,
                                           clock=fake_time.clock)
    assert http.request("GET", "/customers").status == 200
    assert len(fake_time.waits) == 3
    assert all(0 <= wait <= 0.001 * 2 ** attempt for attempt, wait in enumerate(fake_time.waits))


def test_gives_up_after_max_retries_with_the_last_error(server, fake_time):
    server.script(*[Answer(502, error_body("bad gateway"))] * (talkhttp._MAX_RETRIES + 1))
    http = client(server, fake_time)
    with pytest.raises(TransientApiError) as caught:
        http.request("GET", "/customers")
    assert caught.value.status == 502 and caught.value.transient
    assert http.request_count == talkhttp._MAX_RETRIES + 1
    assert len(fake_time.waits) == talkhttp._MAX_RETRIES
    assert all(0 <= w <= talkhttp._MAX_BACKOFF_S for w in fake_time.waits)


def test_retry_after_seconds_and_http_date_are_honoured(server, fake_time, monkeypatch):
    now = float(int(time.time()))           # the wall clock stands still: an HTTP date is
    monkeypatch.setattr(time, "time", lambda: now)     # read against it (urllib3's Retry)
    in_two_minutes = email.utils.formatdate(now + 120, usegmt=True)
    server.script(Answer(429, error_body("slow down"), {"Retry-After": "7"}),
                  Answer(503, error_body("maintenance"), {"Retry-After": in_two_minutes}),
                  Answer(200, {"ok": True}))
    http = client(server, fake_time)
    assert http.request("GET", "/products").data == {"ok": True}
    assert fake_time.waits[0] == 7
    assert fake_time.waits[1] == 120
    assert http.request_count == 3


def test_retry_after_beyond_the_cap_is_not_waited_out(server, fake_time):
    server.script(Answer(429, error_body("come back tomorrow"), {"Retry-After": "86400"}))
    http = client(server, fake_time)
    with pytest.raises(RateLimitedError) as caught:
        http.request("GET", "/products")
    assert caught.value.status == 429 and caught.value.transient
    assert fake_time.waits == [] and http.request_count == 1


@pytest.mark.parametrize("status, error_type", [
    (400, PermanentApiError), (401, CredentialsRefusedError), (404, PermanentApiError),
    (422, PermanentApiError), (409, PreconditionFailedError), (412, PreconditionFailedError),
])
def test_4xx_is_not_retried(server, fake_time, status, error_type):
    server.script(Answer(status, error_body("no good", "nope")))
    http = client(server, fake_time)
    with pytest.raises(ApiError) as caught:
        http.request("PATCH", "/customers/cus_1", json={"email": "x"})
    assert type(caught.value) is error_type
    assert caught.value.status == status and not caught.value.transient
    assert caught.value.body == error_body("no good", "nope")
    assert caught.value.system == "shop"
    assert str(caught.value) == f"shop: PATCH /customers/cus_1 -> HTTP {status}: " + json.dumps(
        error_body("no good", "nope"), separators=(",", ":"))
    assert http.request_count == 1 and fake_time.waits == []


def test_status_to_exception_table():
    expected = {408: TransientApiError, 429: RateLimitedError, 500: TransientApiError,
                501: TransientApiError, 503: TransientApiError, 409: PreconditionFailedError,
                412: PreconditionFailedError, 400: PermanentApiError, 403: CredentialsRefusedError,
                422: PermanentApiError, 302: PermanentApiError}
    assert {s: errors.error_type(s) for s in expected} == expected


def test_describe_error_shapes_the_message(server, fake_time):
    server.script(Answer(422, {"Error": {"Message": "Name is required"}}))
    http = client(server, fake_time, describe_error=lambda body: body["Error"]["Message"])
    with pytest.raises(PermanentApiError, match=r"^shop: POST /Customers -> HTTP 422: "
                                                r"Name is required$"):
        http.request("POST", "/Customers", json={})


def test_non_json_error_body_is_kept_as_truncated_text(server, fake_time):
    server.script(Answer(502, "<html>" + "x" * 5000 + "</html>"))
    http = client(server, fake_time, max_retries=0)
    with pytest.raises(TransientApiError) as caught:
        http.request("GET", "/customers")
    assert caught.value.body == ("<html>" + "x" * 5000)[:talkhttp._ERROR_TEXT_LIMIT]


def test_redirects_are_not_followed(server, fake_time):
    server.script(Answer(302, "", {"Location": "http://example.invalid/steal"}))
    http = client(server, fake_time, headers={"X-Api-Key": SECRET})
    with pytest.raises(PermanentApiError) as caught:
        http.request("GET", "/customers")
    assert caught.value.status == 302 and http.request_count == 1


# --- idempotency -------------------------------------------------------------------------------

def test_post_without_idempotency_key_is_not_resent_after_a_dropped_connection(server, fake_time):
    server.script(DROP, Answer(201, {"id": "cus_2"}))
    http = client(server, fake_time)
    with pytest.raises(TransientApiError) as caught:
        http.request("POST", "/customers", json={"email": "a@b.no"})
    assert caught.value.status is None and caught.value.transient
    assert "POST /customers failed" in str(caught.value)
    assert http.request_count == 1 and len(server.seen) == 1 and fake_time.waits == []


def test_post_with_idempotency_key_is_resent_after_a_dropped_connection(server, fake_time):
    server.script(DROP, Answer(201, {"id": "cus_1"}))
    http = client(server, fake_time)
    response = http.request("POST", "/customers", json={"email": "a@b.no"},
                            headers={"Idempotency-Key": "attempt-1"})
    assert response.status == 201 and response.data == {"id": "cus_1"}
    assert [s.headers["Idempotency-Key"] for s in server.seen] == ["attempt-1", "attempt-1"]
    assert http.request_count == 2 and len(fake_time.waits) == 1


def test_caller_decides_idempotency_explicitly(server, fake_time):
    server.script(DROP, Answer(200, {"results": []}), DROP)
    http = client(server, fake_time)
    assert http.request("POST", "/customers:batch", json={"operations": []},
                        idempotent=True).data == {"results": []}
    with pytest.raises(TransientApiError):
        http.request("PUT", "/Customers/C1", json={"Name": "x"}, idempotent=False)
    assert http.request_count == 3


def test_get_is_resent_after_a_dropped_connection(server, fake_time):
    server.script(DROP, DROP, Answer(200, {"data": []}))
    http = client(server, fake_time)
    assert http.request("GET", "/customers").data == {"data": []}
    assert http.request_count == 3


def test_non_idempotent_post_is_not_resent_after_a_5xx(server, fake_time):
    server.script(Answer(503, error_body("busy")), Answer(201, {}))
    http = client(server, fake_time)
    with pytest.raises(TransientApiError) as caught:
        http.request("POST", "/Customers", json={"Name": "x"})
    assert caught.value.status == 503 and http.request_count == 1


def test_non_idempotent_post_is_resent_after_429(server, fake_time):
    server.script(Answer(429, error_body("slow"), {"Retry-After": "2"}), Answer(201, {"No": 1}))
    http = client(server, fake_time)
    assert http.request("POST", "/Customers", json={"Name": "x"}).status == 201
    assert fake_time.waits == [2] and http.request_count == 2


def test_refused_connection_is_retried_even_for_a_non_idempotent_post(fake_time, refused_port):
    http = talkhttp.HttpClient(f"http://127.0.0.1:{refused_port}", system="erp", max_retries=3,
                               sleep=fake_time.sleep)
    with pytest.raises(TransientApiError) as caught:
        http.request("POST", "/Customers", json={"Name": "x"})
    assert "Connection refused" in str(caught.value) or "NewConnectionError" in str(caught.value)
    assert http.request_count == 4 and len(fake_time.waits) == 3


def test_read_timeout_after_sending_a_non_idempotent_post_is_raised_at_once(server, fake_time):
    server.script(Answer(hold=True))
    http = client(server, fake_time, read_timeout_s=0.3)
    with pytest.raises(TransientApiError, match="ReadTimeout"):
        http.request("POST", "/Customers", json={"Name": "x"})
    assert http.request_count == 1 and fake_time.waits == []


# --- secrets, counting, bodies -------------------------------------------------------------------

def test_secrets_are_masked_in_messages_and_bodies(server, fake_time):
    server.script(Answer(401, {"error": {"code": "unauthorized",
                                         "message": f"key {SECRET} is not valid",
                                         "details": [{"field": SECRET, "issue": "bad"}]}}))
    http = client(server, fake_time, headers={"X-Api-Key": SECRET},
                  masker=secrets.Masker([SECRET]))
    with pytest.raises(PermanentApiError) as caught:
        http.request("GET", f"/customers/{SECRET}")
    assert server.seen[0].headers["X-Api-Key"] == SECRET
    text = str(caught.value) + repr(caught.value.body)
    assert SECRET not in text
    assert caught.value.body["error"]["message"] == "key *** is not valid"
    assert caught.value.body["error"]["details"][0]["field"] == "***"
    assert "GET /customers/***" in str(caught.value)


def test_secrets_are_masked_in_network_errors(fake_time, refused_port):
    http = talkhttp.HttpClient(f"http://127.0.0.1:{refused_port}", system="erp", max_retries=0,
                               masker=secrets.Masker([SECRET]), sleep=fake_time.sleep)
    with pytest.raises(TransientApiError) as caught:
        http.request("GET", "/Customers", params={"token": SECRET})
    assert SECRET not in str(caught.value) and "***" in str(caught.value)
    # the original exception (unmasked text) is not chained
    assert caught.value.__cause__ is None and caught.value.__context__ is None


def test_every_attempt_is_counted(server, fake_time):
    server.script(Answer(500, {}), Answer(200, {}), Answer(404, {}), Answer(201, {}))
    http = client(server, fake_time)
    http.request("GET", "/a")
    with pytest.raises(PermanentApiError):
        http.request("GET", "/b")
    http.request("POST", "/c", json={})
    assert http.request_count == 4 == len(server.seen)


def test_default_headers_and_json_body_with_exact_decimals(server, fake_time):
    server.script(Answer(200, '{"price": 12.10, "qty": 3, "rate": 0.1}'))
    http = client(server, fake_time, headers={"Authorization": "ApiKey k"},
                  decimal_numbers=True)
    response = http.request("PUT", "/Products/P1",
                            json={"SalesPrice": decimal.Decimal("12.10"), "Lines": ({"Qty": 2},),
                                  "Name": "Kåre", "Active": True, "Note": None})
    seen = server.seen[0]
    assert seen.headers["Authorization"] == "ApiKey k"
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.body == (b'{"SalesPrice":12.10,"Lines":[{"Qty":2}],"Name":"K\\u00e5re",'
                         b'"Active":true,"Note":null}')
    assert response.data == {"price": decimal.Decimal("12.10"), "qty": 3,
                             "rate": decimal.Decimal("0.1")}
    assert type(response.data["qty"]) is int


def test_etag_and_empty_bodies(server, fake_time):
    server.script(Answer(200, {"id": "x"}, {"ETag": '"7"'}), Answer(204, ""))
    http = client(server, fake_time)
    assert http.request("GET", "/customers/x").etag == '"7"'
    assert http.request("DELETE", "/customers/x").data is None


def test_garbled_success_body_is_retried_when_safe_then_a_transient_error(server, fake_time):
    html = {"Content-Type": "text/html; charset=utf-8"}
    server.script(Answer(200, "<html>proxy says hi</html>", html), Answer(200, {"data": []}))
    http = client(server, fake_time)
    assert http.request("GET", "/customers").data == {"data": []}     # asked again
    assert http.request_count == 2

    server.script(Answer(200, "<html>proxy says hi</html>", html))
    with pytest.raises(TransientApiError, match=r"not JSON \(text/html\): <html>proxy"):
        http.request("POST", "/customers", json={})     # a create is never sent twice
    assert http.request_count == 3


def test_dumps_json_refuses_what_json_cannot_carry():
    with pytest.raises(ValueError):
        wire.dumps_json({"x": decimal.Decimal("NaN")})
    with pytest.raises(TypeError):
        wire.dumps_json({1: "x"})
    assert wire.dumps_json(decimal.Decimal("1E+2")) == "100"


def test_dumps_json_writes_dates_as_iso_8601():
    value = {"d": datetime.date(2026, 1, 31),
             "at": datetime.datetime(2026, 1, 31, 8, 0, tzinfo=datetime.UTC)}
    assert wire.dumps_json(value) == '{"d":"2026-01-31","at":"2026-01-31T08:00:00+00:00"}'


# --- rate limiting -------------------------------------------------------------------------------

def test_token_bucket_spaces_requests(fake_time):
    bucket = talkhttp.TokenBucket(4, clock=fake_time.clock, sleep=fake_time.sleep)
    for _ in range(4):
        bucket.acquire()
    assert fake_time.waits == [0.25, 0.25, 0.25]
    fake_time.now += 10                     # idle: the bucket refills to its capacity (1)
    bucket.acquire()
    bucket.acquire()
    assert fake_time.waits == [0.25, 0.25, 0.25, 0.25]


def test_token_bucket_queues_concurrent_callers(fake_time):
    waits = []
    bucket = talkhttp.TokenBucket(10, capacity=2, clock=fake_time.clock, sleep=waits.append)
    for _ in range(5):                      # five callers at the same instant
        bucket.acquire()
    assert waits == pytest.approx([0.1, 0.2, 0.3])


def test_client_rate_limit_applies_to_every_attempt(server, fake_time):
    server.script(Answer(503, {}, {"Retry-After": "0"}), Answer(200, {}), Answer(200, {}))
    http = client(server, fake_time, requests_per_second=2)
    http.request("GET", "/a")
    http.request("GET", "/b")
    # Retry-After 0, then the limiter before the retry, then before the next request
    assert fake_time.waits == [0, 0.5, 0.5]
    assert http.request_count == 3


def test_rate_must_be_positive():
    with pytest.raises(ValueError, match="requests_per_second"):
        talkhttp.TokenBucket(0)


def test_timestamps_round_trip_as_utc():
    parsed = wire.parse_timestamp("2026-11-21T10:15:00.123456Z")
    assert parsed.utcoffset().total_seconds() == 0
    assert wire.format_timestamp(parsed) == "2026-11-21T10:15:00.123456Z"
    assert wire.format_timestamp(
        wire.parse_timestamp("2026-11-21T11:15:00+01:00")) == "2026-11-21T10:15:00.000000Z"
    with pytest.raises(ValueError):
        wire.parse_timestamp("2026-11-21T10:15:00")
