"""Locked dependencies: a fresh clone installs exactly the versions in ``requirements.txt``.

``make lock`` (uv) writes the lock from setup.py's ranges and the Dataflow workers'
``dataflow/requirements.txt`` from the lock; ``make install`` installs the lock with
``--require-hashes --no-deps`` and talksync itself without dependencies. These tests keep the
three in agreement and check that the environment the tests run in is the locked one.
"""

from __future__ import annotations

import ast
import importlib.metadata
import pathlib
import re

import pytest
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = pathlib.Path(__file__).resolve().parent.parent
LOCK = REPO / "requirements.txt"
WORKER_LOCK = REPO / "dataflow" / "requirements.txt"
#: what Dataflow workers must not install: the emulators' servers and the test tools
NOT_ON_WORKERS = {"sandbox", "test"}


def _entries(path: pathlib.Path) -> list[tuple[Requirement, list[str]]]:
    """The requirements of a pip requirements file with their ``--hash`` options."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # join continuation lines
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        hashes = re.findall(r"--hash=(sha256:[0-9a-f]{64})", line)
        requirement = Requirement(re.sub(r"\s*--hash=\S+", "", line).strip())
        entries.append((requirement, hashes))
    return entries


def _pins(path: pathlib.Path) -> dict[str, Version]:
    """Package name → the version pinned for this interpreter (markers evaluated)."""
    pins = {}
    for requirement, _ in _entries(path):
        if requirement.marker is None or requirement.marker.evaluate():
            pins[canonicalize_name(requirement.name)] = Version(
                str(requirement.specifier).removeprefix("=="))
    return pins


def _required_by(path: pathlib.Path) -> dict[str, set[str]]:
    """Package → the packages that need it, from the ``# via`` comments uv writes."""
    required: dict[str, set[str]] = {}
    current = None
    for line in path.read_text().splitlines():
        pinned = re.match(r"^([A-Za-z0-9_.\-]+)(\[[^\]]*\])?==", line)
        if pinned:
            current = canonicalize_name(pinned.group(1))
            required[current] = set()
        elif current and line.strip().startswith("#"):
            text = re.sub(r"^#\s*(via\b)?\s*", "", line.strip()).split(" (")[0]
            if text and not text.startswith("-c"):
                required[current].add(canonicalize_name(text))
    return required


def _setup_requirements() -> dict[str, list[Requirement]]:
    """setup.py's install_requires (key "") and extras, read without running it."""
    call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    groups = {"": ast.literal_eval(keywords["install_requires"])}
    groups.update(ast.literal_eval(keywords["extras_require"]))
    return {name: [Requirement(r) for r in rows] for name, rows in groups.items()}


@pytest.mark.parametrize("path", [LOCK, WORKER_LOCK], ids=["lock", "workers"])
def test_every_entry_is_pinned_exactly_with_hashes(path):
    entries = _entries(path)
    assert len(entries) > 50, "the lock holds every transitive dependency, not only direct ones"
    for requirement, hashes in entries:
        specifiers = list(requirement.specifier)
        assert len(specifiers) == 1 and specifiers[0].operator == "==", requirement
        assert hashes, f"{requirement} has no --hash (pip install --require-hashes needs one)"


def test_the_lock_covers_every_range_of_setup_py_and_satisfies_it():
    pins = _pins(LOCK)
    for group, requirements in _setup_requirements().items():
        for requirement in requirements:
            name = canonicalize_name(requirement.name)
            assert name in pins, f"{requirement} ({group or 'install_requires'}) is not locked"
            assert requirement.specifier.contains(pins[name], prereleases=True), (
                f"the lock's {name}=={pins[name]} is outside setup.py's {requirement}: "
                f"run `make lock`")


def test_the_installers_and_the_lock_tool_are_locked_too():
    assert {"pip", "setuptools", "wheel", "uv"} <= set(_pins(LOCK))


def test_workers_install_the_locked_versions_of_talksync_and_gcp_only():
    lock, workers = _pins(LOCK), _pins(WORKER_LOCK)
    different = {name: (str(version), str(lock.get(name))) for name, version in workers.items()
                 if lock.get(name) != version}
    assert not different, f"dataflow/requirements.txt differs from the lock: {different}; " \
                          f"run `make lock`"
    groups = _setup_requirements()
    for requirement in groups[""] + groups["gcp"]:
        assert canonicalize_name(requirement.name) in workers, requirement
    required_by = _required_by(WORKER_LOCK)
    for extra in NOT_ON_WORKERS:
        for requirement in groups[extra]:
            name = canonicalize_name(requirement.name)
            # on the workers only as another package's dependency (Beam needs pillow), never
            # for talksync's own sake
            assert name not in workers or "talksync" not in required_by[name], (
                f"{requirement.name} ([{extra}]) must not be installed on Dataflow workers")
    assert "werkzeug" not in workers and "graphql-core" not in workers
    beam = next(r for r, _ in _entries(WORKER_LOCK) if r.name == "apache-beam")
    assert "gcp" in beam.extras or "google-cloud-dataflow-client" in workers


def test_the_environment_running_these_tests_is_the_locked_one():
    """A fresh clone's `make test` installs exactly the lock: nothing floats."""
    wrong = {}
    for name, version in _pins(LOCK).items():
        try:
            installed = Version(importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError:
            wrong[name] = (str(version), "not installed")
            continue
        if installed != version:
            wrong[name] = (str(version), str(installed))
    assert not wrong, f"locked vs installed: {wrong}; run `make clean test`"


def test_make_installs_only_from_the_lock():
    makefile = (REPO / "Makefile").read_text()
    install = [line.strip() for line in makefile.splitlines() if "pip install" in line]
    assert install, "the Makefile installs nothing?"
    assert any("--require-hashes" in line and "--no-deps" in line and "$(LOCK)" in line
               for line in install), install
    for line in install:
        assert "--no-deps" in line, f"resolves dependencies at install time: {line}"
        assert "--upgrade" not in line, f"floats to the newest release: {line}"
    dockerfile = (REPO / "dataflow" / "Dockerfile").read_text()
    assert "--require-hashes" in dockerfile and "requirements.txt" in dockerfile


def test_the_docs_tell_users_to_install_from_the_lock():
    """An install the docs or the product's messages show a user resolves nothing: a
    `pip install .` or `pip install 'talksync[gcp]'` would take whatever versions are newest
    that day."""
    shown = []
    messages = [path for package in ("core", "connectors", "transforms", "pipelines")
                for path in sorted((REPO / package).rglob("*.py"))]
    for path in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), *messages,
                 REPO / "tests" / "firestore_emulator.py"]:
        for line in path.read_text().splitlines():
            for command in re.findall(r"pip install [^`\n#]*", line):
                shown.append((path.name, command.strip()))
    assert any("--require-hashes" in c and "requirements.txt" in c for _, c in shown), shown
    for name, command in shown:
        assert "--no-deps" in command, f"{name}: resolves dependencies at install time: {command}"


def test_python_markers_of_the_lock_name_only_supported_versions():
    """The lock is universal over the Pythons setup.py admits (3.11 and newer)."""
    requires = re.search(r'python_requires="([^"]+)"', (REPO / "setup.py").read_text()).group(1)
    assert requires == ">=3.11"
    for requirement, _ in _entries(LOCK):
        if requirement.marker is not None:
            Marker(str(requirement.marker))  # parses


def _pinned_by_requirements_txt() -> dict[str, set[str]]:
    pinned: dict[str, set[str]] = {}
    for requirement, _ in _entries(LOCK):
        pinned.setdefault(canonicalize_name(requirement.name), set()).add(
            str(requirement.specifier).removeprefix("=="))
    return pinned


def test_the_standard_lock_file_pins_what_requirements_txt_pins():
    """pylock.toml (PEP 751, written by `make lock` from the same resolution) is the lock in
    the standard format tools read; pip installs from requirements.txt. Both must name the
    same packages at the same versions, each with its hashes."""
    import tomllib
    packages = tomllib.loads((REPO / "pylock.toml").read_text())["packages"]
    standard: dict[str, set[str]] = {}
    for package in packages:
        assert package.get("wheels") or package.get("sdist"), package["name"]
        for artifact in [*package.get("wheels", []), package.get("sdist") or {}]:
            if artifact:
                assert artifact["hashes"]["sha256"], (package["name"], artifact)
        standard.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    assert standard == _pinned_by_requirements_txt()


def test_the_project_lock_pins_what_requirements_txt_pins():
    """uv.lock (`uv lock` over pyproject.toml's project, whose dependencies and extras setup.py
    gives, and its `tools` group) is the project lock `uv sync` and other tools read: the same
    packages at the same versions as requirements.txt, each with its hashes, and not out of date
    with setup.py (`uv lock --locked` would fail)."""
    import tomllib
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    assert "exclude-newer" not in lock.get("options", {})  # a later `uv lock` keeps the pins
    project: dict[str, set[str]] = {}
    for package in lock["package"]:
        if package.get("source", {}).get("editable") == ".":
            assert package["name"] == "talksync"
            continue
        for artifact in [*package.get("wheels", []), package.get("sdist") or {}]:
            if artifact:
                assert artifact["hash"].startswith("sha256:"), (package["name"], artifact)
        project.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    assert project == _pinned_by_requirements_txt()
    talksync = next(p for p in lock["package"] if p["name"] == "talksync")
    extras = set(talksync.get("metadata", {}).get("provides-extras", []))
    assert extras == set(_setup_requirements()) - {""}
