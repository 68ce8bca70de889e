"""A system that never answers: found once per run, said while waiting, over within 2 minutes.

The budget is checked on the HTTP layer's real retry loop with a simulated clock (no real
waiting); the run is checked end to end against a local socket that accepts connections and
never answers, with lowered timeouts.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
import threading
import urllib.parse

import pytest
import requests
import urllib3

from connectors import auth, waiting
from connectors import http as talkhttp
from connectors.base import PROGRESS_LOGGER
from connectors.errors import UnreachableError
from pipelines import preflight

#: the whole run must end within this (issue 14)
_RUN_LIMIT_S = 120.0
#: no progress line may be further apart than this while a request waits
_LONGEST_SILENCE_S = 15.0
#: what the run needs besides the HTTP layer's retries: the pipeline starting and finishing,
#: the other side's reads, the run's other requests to the system failing at once
_PIPELINE_ALLOWANCE_S = 30.0


class SimulatedTime:
    """A clock that moves only when a request waits: in small steps, letting the watcher speak
    (as its thread would), and recording every progress line with its simulated time."""

    def __init__(self):
        self.now = 0.0
        self.lines: list[tuple[float, str]] = []
        self.watcher = waiting.StillWaiting(clock=self.clock, background=False)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + 0.1)
            self.watcher.check()


class NeverAnsweringSession:
    """Stands in for ``requests.Session``: every attempt runs into a timeout (or is refused)
    after the time it would take, simulated."""

    def __init__(self, time: SimulatedTime, how: str):
        self.time = time
        self.how = how
        self.attempts = 0

    def request(self, method, url, *, timeout, **kwargs):
        self.attempts += 1
        connect_s, read_s = timeout
        if self.how == "accepts":            # connects at once, then no answer
            self.time.sleep(read_s)
            raise requests.exceptions.ReadTimeout("read timed out")
        if self.how == "accepts slowly":     # connects just in time, then no answer
            self.time.sleep(connect_s * 0.99 + read_s)
            raise requests.exceptions.ReadTimeout("read timed out")
        if self.how == "blackholed":         # the connection is never accepted
            self.time.sleep(connect_s)
            raise requests.exceptions.ConnectTimeout("connect timed out")
        if self.how == "drops":              # the connection is closed without an answer
            raise requests.exceptions.ConnectionError(ConnectionResetError("reset by peer"))
        raise requests.exceptions.ConnectionError(urllib3.exceptions.MaxRetryError(
            None, url, urllib3.exceptions.NewConnectionError(None, "connection refused")))

    def post(self, url, **kwargs):
        return self.request("POST", url, **kwargs)

    def close(self):
        pass


class Lines(logging.Handler):
    def __init__(self, time: SimulatedTime):
        super().__init__(logging.INFO)
        self.time = time

    def emit(self, record):
        self.time.lines.append((self.time.now, record.getMessage()))


@pytest.fixture
def simulated(monkeypatch):
    """A simulated clock, the progress lines it records, and worst-case (longest) backoffs."""
    time = SimulatedTime()
    handler = Lines(time)
    logger = logging.getLogger(PROGRESS_LOGGER)
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    monkeypatch.setattr(talkhttp.random, "uniform", lambda low, high: high)
    yield time
    logger.removeHandler(handler)
    logger.setLevel(level)


def default_client(time: SimulatedTime, how: str, **kwargs) -> tuple[talkhttp.HttpClient,
                                                                     NeverAnsweringSession]:
    """A client with every default timeout and retry setting, on the simulated clock."""
    client = talkhttp.HttpClient("https://erp.example.com/api?key=SECRET", system="erp",
                                 sleep=time.sleep, clock=time.clock,
                                 still_waiting=time.watcher, **kwargs)
    session = NeverAnsweringSession(time, how)
    client._session = session
    return client, session


@pytest.mark.parametrize("how", ["accepts", "accepts slowly", "blackholed", "refused"])
def test_with_the_defaults_a_system_that_never_answers_is_given_up_in_time_and_never_silently(
        simulated, how):
    client, session = default_client(simulated, how)
    with pytest.raises(UnreachableError):
        client.request("GET", "/Customers?$skiptoken=abc")
    gave_up = simulated.now
    assert gave_up + _PIPELINE_ALLOWANCE_S <= _RUN_LIMIT_S, \
        f"{how}: {session.attempts} attempts took {gave_up:.1f} s"
    times = [0.0, *(at for at, _ in simulated.lines), gave_up]
    silences = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(silences) <= _LONGEST_SILENCE_S, (how, simulated.lines)
    for _, line in simulated.lines:
        assert line.startswith("erp: GET /Customers") and "skiptoken" not in line
        assert "SECRET" not in line and "example.com" not in line


def test_a_request_left_without_an_answer_says_so_with_its_attempt(simulated):
    client, _ = default_client(simulated, "accepts")
    with pytest.raises(UnreachableError):
        client.request("GET", "/Customers")
    lines = [line for _, line in simulated.lines]
    assert "erp: GET /Customers: still waiting after 10 s (attempt 1/6)" in lines
    assert "erp: GET /Customers: still waiting after 40 s (attempt 2/6)" in lines


def test_every_retry_wait_over_two_seconds_is_announced(simulated):
    client, session = default_client(simulated, "blackholed")
    with pytest.raises(UnreachableError):
        client.request("GET", "/Customers")
    assert session.attempts == talkhttp._MAX_RETRIES + 1
    retries = [line for _, line in simulated.lines if "retrying" in line]
    assert retries == [   # the waits before: 0.5, 1, 2 s (not announced), 4 s, 8 s
        "erp: GET /Customers got no answer (ConnectTimeout) (attempt 4/6); retrying in 4.0 s",
        "erp: GET /Customers got no answer (ConnectTimeout) (attempt 5/6); retrying in 8.0 s"]


def test_a_system_that_gave_no_answer_is_not_asked_again_by_the_process_for_a_while(
        simulated, monkeypatch):
    client, session = default_client(simulated, "accepts")
    with pytest.raises(UnreachableError) as first:
        client.request("GET", "/Customers")
    tried = session.attempts
    other, other_session = default_client(simulated, "accepts")   # another pair's connector
    with pytest.raises(UnreachableError) as again:
        other.request("GET", "/Items")
    assert other_session.attempts == 0 and session.attempts == tried
    assert again.value.system == "erp"
    assert str(again.value).startswith("erp: GET /Items not sent: the system did not answer")
    assert first.value.message in str(again.value)
    monkeypatch.setattr(waiting.UNREACHABLE, "_remember", -1.0)      # remembered long enough
    with pytest.raises(UnreachableError):
        other.request("GET", "/Items")
    assert other_session.attempts > 0


def test_a_system_that_drops_connections_is_asked_again_by_the_next_request(simulated):
    client, _ = default_client(simulated, "drops")     # quick to fail, and may have been sent
    with pytest.raises(UnreachableError):
        client.request("GET", "/Customers")
    other, other_session = default_client(simulated, "drops")
    with pytest.raises(UnreachableError, match="ConnectionError"):
        other.request("GET", "/Items")
    assert other_session.attempts == talkhttp._MAX_RETRIES + 1


def test_a_refused_connection_makes_the_system_unreachable(simulated):
    client, _ = default_client(simulated, "refused")
    with pytest.raises(UnreachableError):
        client.request("GET", "/Customers")
    other, other_session = default_client(simulated, "refused")
    with pytest.raises(UnreachableError, match="not sent"):
        other.request("GET", "/Items")
    assert other_session.attempts == 0


def test_a_post_that_may_have_been_received_does_not_make_the_system_unreachable(simulated):
    client, session = default_client(simulated, "accepts")
    with pytest.raises(UnreachableError):
        client.request("POST", "/Customers", json={"Name": "x"})   # not resent: may be created
    assert session.attempts == 1
    assert waiting.UNREACHABLE.refusal(("erp", "https://erp.example.com/api?key=SECRET"),
                                       "GET /Customers") is None


def test_a_token_endpoint_that_never_answers_makes_the_system_unreachable(simulated):
    token = auth.ClientCredentialsToken("https://login.example.com/tenant/token", "client",
                                            "SECRET", "scope", system="erp")
    token._session = token_endpoint = NeverAnsweringSession(simulated, "accepts")
    client, api = default_client(simulated, "accepts", auth=token)
    with pytest.raises(UnreachableError, match="erp: token request to .* ReadTimeout"):
        client.request("GET", "/Customers")
    assert "erp: GET /Customers: still waiting after 10 s (attempt 1/6)" in [
        line for _, line in simulated.lines]
    other, other_api = default_client(simulated, "accepts", auth=token)
    with pytest.raises(UnreachableError, match="not sent"):
        other.request("GET", "/Items")
    assert token_endpoint.attempts == 1 and api.attempts == other_api.attempts == 0


def test_the_watcher_thread_says_a_request_is_still_waiting_until_it_is_done():
    said = threading.Event()
    lines = []

    class Said(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())
            said.set()

    logger = logging.getLogger(PROGRESS_LOGGER)
    handler, level = Said(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        watcher = waiting.StillWaiting(every_s=0.05)
        request = waiting.PendingRequest("erp", "GET", "/Customers?page=2", 3, watcher.clock())
        watcher.watch(request)
        assert said.wait(30)
        watcher.done(request)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert lines[0].startswith("erp: GET /Customers: still waiting after 0 s (attempt 1/3)")


# --- end to end ---------------------------------------------------------------------------------

class NeverAnsweringServer:
    """A TCP server on 127.0.0.1 that accepts every connection and never answers."""

    def __init__(self):
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.accepted = 0
        self._open: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            self._open.append(connection)

    def close(self):
        self._stop.set()
        self._thread.join()
        for connection in self._open:
            connection.close()
        self._listener.close()


@pytest.fixture
def never_answering():
    server = NeverAnsweringServer()
    yield server
    server.close()


def _silent_erp(harness, never_answering, monkeypatch) -> None:
    monkeypatch.setattr(waiting, "STILL_WAITING", waiting.StillWaiting(every_s=0.2))
    erp_url = urllib.parse.urlsplit(harness.sandbox.url("customerp"))
    harness.configure("customerp", base_url=erp_url._replace(
        netloc=f"127.0.0.1:{never_answering.port}").geturl(), timeout_s=0.6, max_retries=2)


def test_a_run_against_a_system_that_never_answers_finds_it_once_and_fails_saying_so(
        harness, never_answering, capsys, monkeypatch):
    """The run's pre-flight read finds the silence (three attempts, with progress lines); the
    dataflow is not run at all, and the next run asks again."""
    _silent_erp(harness, never_answering, monkeypatch)
    status, report = harness.run()
    err = capsys.readouterr().err
    assert status == 1 and report == {}
    assert "systems.customerp could not be reached at http://127.0.0.1:" in err
    assert "customerp-customwebshop not run: customerp cannot be read now" in err
    assert never_answering.accepted == 3
    assert re.search(r"customerp: GET /Customers: still waiting after", err)
    assert "/3)" in err          # the attempt it is on, of 3
    assert harness.writes("customwebshop") == {}
    # the next run asks the system again (and finds it once again)
    assert harness.run()[0] == 1
    assert never_answering.accepted == 6


def test_a_system_that_stops_answering_mid_run_is_found_once_for_every_pair(
        harness, never_answering, capsys, monkeypatch):
    """The system answered the pre-flight check and went silent after (simulated by passing
    the check): one pair's read meets the silence; the other pairs fail at once, unsent."""
    _silent_erp(harness, never_answering, monkeypatch)
    monkeypatch.setattr(preflight, "preflight", lambda config, systems: [])
    status, report = harness.run()
    err = capsys.readouterr().err
    assert status == 1
    assert "customerp-customwebshop failed: customerp could not be reached" in err
    # one pair's read tried three times (the pairs' order is Beam's); the other two pairs did
    # not connect at all
    assert never_answering.accepted == 3
    assert report["unreachable"] == {"customerp": 3}
    assert re.search(r"customerp: GET /(Customers|Products|Orders): still waiting after", err)
    assert "not sent: the system did not answer" in err
    assert set(report["pairs"]) == {"customer", "product", "order"}
