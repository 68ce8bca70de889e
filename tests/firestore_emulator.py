"""Google's Cloud Firestore emulator for tests: started once per session, emptied per test.

Test modules import the fixtures :func:`firestore_emulator` (the running emulator) and
:func:`firestore_url` (an emptied database, as a link-store URL). Where the emulator is not
installed the tests that need it are skipped with a message saying how to install it; with
``TALKSYNC_REQUIRE_FIRESTORE_EMULATOR=1`` (CI) they fail instead.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests

PROJECT = "talksync-test"
REQUIRE_VARIABLE = "TALKSYNC_REQUIRE_FIRESTORE_EMULATOR"
INSTALL_HINT = ("install the Firestore emulator: `apt-get install "
                "google-cloud-cli-firestore-emulator` (or `gcloud components install "
                "cloud-firestore-emulator`), Java 11+ and the locked packages (`make install`)")
#: how long the emulator may take to answer after it was started or stopped
_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 15.0
_POLL_S = 0.1
#: free ports tried before giving up: another process may take one between the probe and the
#: emulator's bind (the emulator cannot report the port it got for port 0)
_PORT_ATTEMPTS = 5
#: what the emulator logs once it listens on its port, and when the port was taken meanwhile
_RUNNING_LINE = "Dev App Server is now running"
_PORT_TAKEN_LINE = "BindException"
_EMULATOR_COMPONENT = pathlib.Path("platform", "cloud-firestore-emulator")


def missing_reason() -> str | None:
    """Why the emulator cannot run here, or None when it can."""
    try:
        import google.cloud.firestore  # noqa: F401
    except ImportError:
        return "google-cloud-firestore is not installed"
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        return "gcloud is not on PATH"
    sdk_root = pathlib.Path(gcloud).resolve().parent.parent
    if not (sdk_root / _EMULATOR_COMPONENT).is_dir():
        return f"the cloud-firestore-emulator component is missing in {sdk_root}"
    if shutil.which("java") is None:
        return "java is not on PATH"
    return None


def require_emulator() -> None:
    """Skip the test when the emulator cannot run, or fail it when CI requires the emulator."""
    reason = missing_reason()
    if reason is None:
        return
    message = f"Firestore emulator unavailable ({reason}); {INSTALL_HINT}"
    if os.environ.get(REQUIRE_VARIABLE) == "1":
        pytest.fail(f"{message} [{REQUIRE_VARIABLE}=1 makes this a failure]", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class FirestoreEmulator:
    """One `gcloud emulators firestore start` process group on 127.0.0.1:``port``.

    Without a ``port`` the first :meth:`start` takes a free one; a later start (a restart)
    uses the same port again.
    """

    def __init__(self, workdir: pathlib.Path, port: int | None = None):
        self.port = port
        self.workdir = workdir
        self._process: subprocess.Popen | None = None
        self._starts = 0

    @property
    def host(self) -> str:
        """``127.0.0.1:PORT``, the value of FIRESTORE_EMULATOR_HOST."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the emulator and wait (bounded) until it listens and answers ``Ok``.

        A free port is found by binding port 0 and closing it, so another process (the other
        test worker's emulator) may take it before the emulator binds it: the emulator then
        exits, and the next free port is tried. That another server answers on the port is not
        taken as ours starting: ours must say in its own log that it runs.
        """
        if self.port is not None:
            if not self._start_on(self.port):
                raise RuntimeError(f"the Firestore emulator's port {self.port} is taken")
            return
        for _ in range(_PORT_ATTEMPTS):
            self.port = free_port()
            if self._start_on(self.port):
                return
        raise RuntimeError(f"the Firestore emulator found no free port in {_PORT_ATTEMPTS} "
                           "attempts")

    def _start_on(self, port: int) -> bool:
        """Start on ``port``; False when another process had taken it."""
        self._starts += 1
        log = self.workdir / f"emulator-{self._starts}.log"
        env = {**os.environ, "CLOUDSDK_CONFIG": str(self.workdir / "gcloud"),
               "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
        env.pop("FIRESTORE_EMULATOR_HOST", None)
        with open(log, "wb") as output:
            self._process = subprocess.Popen(
                ["gcloud", "emulators", "firestore", "start", f"--host-port=127.0.0.1:{port}"],
                stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True)       # its own process group: stop() ends all of it
        deadline = time.monotonic() + _START_TIMEOUT_S
        while not (_RUNNING_LINE in log.read_text(errors="replace") and self._answers()):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop(linger=False)   # what answers on the port may be another's
                output = log.read_text(errors="replace")
                if _PORT_TAKEN_LINE in output:
                    return False
                raise RuntimeError(f"the Firestore emulator did not start on 127.0.0.1:{port} "
                                   f"within {_START_TIMEOUT_S:.0f} s; its output:\n"
                                   f"{output[-2000:]}")
            time.sleep(_POLL_S)
        return True

    def stop(self, linger: bool = True) -> None:
        """End the whole process group (gcloud, its shell wrapper, the Java emulator); with
        ``linger``, wait (bounded) until its port no longer answers."""
        process, self._process = self._process, None
        if process is None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=_STOP_TIMEOUT_S)
                break
            except subprocess.TimeoutExpired:
                continue
        deadline = time.monotonic() + _STOP_TIMEOUT_S
        while linger and self._answers() and time.monotonic() < deadline:   # the JVM lingers
            time.sleep(_POLL_S)

    def reset(self, project: str = PROJECT, database: str = "(default)") -> None:
        """Delete every document of ``database`` in ``project``."""
        response = requests.delete(
            f"http://{self.host}/emulator/v1/projects/{project}/databases/{database}/documents",
            timeout=30)
        assert response.status_code == 200, response.text

    def _answers(self) -> bool:
        try:
            return requests.get(f"http://{self.host}/", timeout=1).text.strip() == "Ok"
        except requests.RequestException:
            return False


class _Shared:
    """The session's one emulator, however many test modules import the fixture."""

    emulator: FirestoreEmulator | None = None
    users = 0


@pytest.fixture(scope="session")
def firestore_emulator():
    """The running emulator, with FIRESTORE_EMULATOR_HOST pointing at it."""
    require_emulator()
    if _Shared.emulator is None:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="talksync-firestore-"))
        emulator = FirestoreEmulator(workdir)
        emulator.start()
        _Shared.emulator = emulator
    _Shared.users += 1
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FIRESTORE_EMULATOR_HOST", _Shared.emulator.host)
        try:
            yield _Shared.emulator
        finally:
            _Shared.users -= 1
            if _Shared.users == 0:
                _Shared.emulator.stop()
                shutil.rmtree(_Shared.emulator.workdir, ignore_errors=True)
                _Shared.emulator = None


@pytest.fixture
def firestore_url(firestore_emulator) -> str:
    """The link-store URL of an emptied emulator database."""
    firestore_emulator.reset()
    return f"firestore://{PROJECT}"
