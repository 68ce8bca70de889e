"""Running on Google Cloud Dataflow, validated offline (docs/dataflow.md).

- the flex template's metadata is generated from the options, checked in current, and accepted
  by ``gcloud dataflow flex-template build --print-only``;
- a ``DataflowRunner`` dry run builds the job of every shipped dataflow, with a Firestore link
  store (Google's emulator), and the launcher does not wait for the job;
- secrets: no secret value is in the job, the pipeline options or the logs of a launch; Secret
  Manager references are resolved where the connectors are built (a fake client at the
  ``google.cloud.secretmanager`` boundary) and a sync with them works end to end;
- the SQLite store is refused on Dataflow; the config is read through Beam's FileSystems (gs://);
- the Dockerfile and requirements of the template have the structure Dataflow needs;
- writes are keyed by system and shard (``write_shards``) and a sharded sync is still exact.
"""

from __future__ import annotations

import base64
import bz2
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import zlib

import apache_beam as beam
import pytest
import yaml
from apache_beam.options.pipeline_options import PipelineOptions

from connectors import secrets
from core.model import SystemConfig
from core.spec import available_dataflows
from pipelines import cli, run_driver, sync_pipeline, template
from pipelines.config import ConfigError, load_config
from pipelines.options import TEMPLATE_PARAMETERS, SyncOptions
from tests.conftest import group_by
from tests.firestore_emulator import firestore_emulator, firestore_url  # noqa: F401 (fixtures)
from transforms import write

REPO = pathlib.Path(__file__).resolve().parent.parent
DATAFLOW_ARGS = ["--runner=DataflowRunner", "--project=demo-proj", "--region=europe-west1",
                 "--temp_location=gs://demo-bucket/tmp",
                 "--staging_location=gs://demo-bucket/staging", "--dry_run=True"]
#: unique values that must never leave the machine that resolves them
SHOP_KEY = "shop-key-5Qm7v2Zt9"
BC_SECRET = "bc-secret-Hk3w8Jr1x"
NXT_SECRET = "nxt-secret-Lp4d6Ws0q"
BC_SECRET_NAME = "projects/demo-proj/secrets/bc-client-secret/versions/3"
NXT_SECRET_NAME = "projects/demo-proj/secrets/nxt-client-secret/versions/latest"


# --- the template's metadata -------------------------------------------------------------------

def _options() -> dict:
    import argparse
    parser = argparse.ArgumentParser(add_help=False)
    SyncOptions._add_argparse_args(parser)
    return {action.dest: action for action in parser._actions}


def test_metadata_has_every_option_with_name_label_help_and_type():
    metadata = template.template_metadata()
    parameters = {p["name"]: p for p in metadata["parameters"]}
    assert set(parameters) == set(_options()) == set(TEMPLATE_PARAMETERS)
    for name, parameter in parameters.items():
        assert parameter["label"] and parameter["helpText"], name
        assert parameter["helpText"] == _options()[name].help
    assert [o["value"] for o in parameters["dataflow"]["enumOptions"]] == sorted(
        available_dataflows())
    assert parameters["dataflow"]["paramType"] == "ENUM"
    assert parameters["dataflow"]["isOptional"] is False
    assert parameters["config"]["isOptional"] is False
    assert [o["value"] for o in parameters["mode"]["enumOptions"]] == ["sync", "plan"]
    assert parameters["mode"]["defaultValue"] == "sync"
    assert parameters["full_rescan"]["paramType"] == "BOOLEAN"
    assert parameters["full_rescan"]["defaultValue"] == "false"
    assert parameters["read_overlap_seconds"]["paramType"] == "NUMBER"
    assert parameters["runs_dir"]["paramType"] == "GCS_WRITE_FOLDER"


def test_checked_in_metadata_is_current():
    checked_in = (REPO / "dataflow" / "metadata.json").read_text(encoding="utf-8")
    assert checked_in == template.metadata_text(), (
        "dataflow/metadata.json is stale: run `talksync template metadata` and commit it")


def test_option_without_template_label_is_refused(monkeypatch):
    labels = dict(TEMPLATE_PARAMETERS)
    del labels["pairs"]
    monkeypatch.setattr(template, "TEMPLATE_PARAMETERS", labels)
    with pytest.raises(template.TemplateError, match="--pairs .*TEMPLATE_PARAMETERS"):
        template.template_metadata()


def test_cli_writes_the_metadata(tmp_path, capsys):
    out = tmp_path / "metadata.json"
    assert cli.main(["template", "metadata", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == template.template_metadata()


@pytest.mark.parametrize("flags,expected", [
    ([], False), (["--full_rescan"], True), (["--full_rescan=true"], True),
    (["--full_rescan=false"], False), (["--full_rescan=False"], False)])
def test_full_rescan_takes_the_template_form_and_the_flag_form(flags, expected):
    assert PipelineOptions(flags).view_as(SyncOptions).full_rescan is expected


def _gcloud_build(metadata_file: pathlib.Path, tmp_path: pathlib.Path):
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        if os.environ.get("TALKSYNC_CI") == "1":
            pytest.fail("gcloud is not on PATH; CI (TALKSYNC_CI=1) needs it to validate the "
                        "flex template metadata")
        pytest.skip("gcloud is not on PATH: cannot validate the flex template metadata "
                    "(install the Google Cloud SDK)")
    env = {**os.environ, "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
           "CLOUDSDK_CORE_DISABLE_PROMPTS": "1"}
    return subprocess.run(
        [gcloud, "dataflow", "flex-template", "build", "gs://demo-bucket/templates/talksync.json",
         "--image=europe-docker.pkg.dev/demo-proj/talksync/launcher:test",
         "--sdk-language=PYTHON", f"--metadata-file={metadata_file}", "--print-only"],
        capture_output=True, text=True, env=env, timeout=60)


def test_gcloud_accepts_the_generated_metadata_and_refuses_a_parameter_without_help(tmp_path):
    metadata = tmp_path / "metadata.json"
    metadata.write_text(template.metadata_text())
    built = _gcloud_build(metadata, tmp_path)
    assert built.returncode == 0, built.stderr
    spec = json.loads(yaml.safe_load(built.stdout))    # gcloud prints the JSON as a YAML text
    assert spec["sdkInfo"]["language"] == "PYTHON"
    assert spec["metadata"]["parameters"] == template.template_metadata()["parameters"]

    broken = template.template_metadata()
    broken["parameters"][1]["helpText"] = ""
    metadata.write_text(json.dumps(broken))
    refused = _gcloud_build(metadata, tmp_path)
    assert refused.returncode != 0 and "helpText" in refused.stderr


# --- the template's image ------------------------------------------------------------------------

def test_dockerfile_builds_a_python_launcher_of_the_packages():
    lines = [line.strip() for line in (REPO / "dataflow" / "Dockerfile").read_text().splitlines()
             if line.strip() and not line.strip().startswith("#")]
    assert lines[0].startswith(
        "FROM gcr.io/dataflow-templates-base/python311-template-launcher-base")
    env = dict(re.findall(r'^ENV (\w+)=("?[^"\s]+"?)', "\n".join(lines), re.M))
    assert env["FLEX_TEMPLATE_PYTHON_PY_FILE"].strip('"').endswith("/main.py")
    assert env["FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE"].strip('"').endswith(
        "/requirements.txt")
    assert env["FLEX_TEMPLATE_PYTHON_SETUP_FILE"].strip('"').endswith("/setup.py")
    copied = " ".join(line for line in lines if line.startswith("COPY"))
    for needed in ("pipelines", "transforms", "connectors", "core", "setup.py",
                   "requirements.txt", "main.py"):
        assert needed in copied, needed
    assert any("pip install" in line and "requirements.txt" in line for line in lines)


def test_setup_ships_the_packages_and_the_gcp_extra_has_secret_manager():
    import ast
    call = next(node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "setup")
    keywords = {k.arg: k.value for k in call.keywords}
    include = ast.literal_eval(next(k.value for k in keywords["packages"].keywords
                                    if k.arg == "include"))
    assert {"pipelines", "transforms", "connectors", "core"} <= set(include)
    gcp = ast.literal_eval(keywords["extras_require"])["gcp"]
    assert any(r.startswith("google-cloud-secret-manager") for r in gcp)
    assert any(r.startswith("apache-beam[gcp]") for r in gcp)


# --- dry runs on the DataflowRunner -----------------------------------------------------------

def _write_config(path: pathlib.Path, link_store: str, **shop_settings) -> str:
    config = {
        "link_store": link_store,
        "runs_dir": "gs://demo-bucket/talksync/runs",
        "systems": {
            "customwebshop": {"type": "customwebshop", "base_url": "https://shop.example.com/api/v1",
                              "api_key": "${TALKSYNC_DF_SHOP_KEY}", **shop_settings},
            "customerp": {"type": "customerp", "base_url": "https://erp.example.com/erp/v1",
                          "api_key": "${TALKSYNC_DF_SHOP_KEY}"},
            "businesscentral": {
                "type": "businesscentral",
                "base_url": "https://api.businesscentral.dynamics.com/v2.0/t1/production/api/v2.0",
                "tenant_id": "t1", "client_id": "bc-client", "company_name": "CRONUS",
                "client_secret": f"secretmanager://{BC_SECRET_NAME}", "write_shards": 4,
                "requests_per_second": 5},
            "businessnxt": {
                "type": "businessnxt", "base_url": "https://business.visma.net/api/graphql-service",
                "tenant_id": "t2", "client_id": "nxt-client", "company_no": 4711,
                "client_secret": f"secretmanager://{NXT_SECRET_NAME}"},
        },
    }
    for spec in available_dataflows().values():     # dataflows added later: their systems too
        for system in (spec.source.system, spec.target.system):
            config["systems"].setdefault(system, {
                "type": system, "base_url": f"https://{system}.example.com/api",
                "api_key": "${TALKSYNC_DF_SHOP_KEY}"})
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


class _FakeSecretManager:
    """``google.cloud.secretmanager.SecretManagerServiceClient`` with a few versions in memory."""

    values = {BC_SECRET_NAME: BC_SECRET, NXT_SECRET_NAME: NXT_SECRET}
    calls: list = []

    def __init__(self, *args, **kwargs):
        pass

    def access_secret_version(self, request=None, **kwargs):
        from google.api_core import exceptions
        from google.cloud import secretmanager
        name = request["name"]
        type(self).calls.append(name)
        if name not in self.values:
            raise exceptions.PermissionDenied(f"Permission denied on resource {name}")
        return secretmanager.AccessSecretVersionResponse(
            name=name, payload=secretmanager.SecretPayload(data=self.values[name].encode()))


@pytest.fixture
def fake_secret_manager(monkeypatch):
    from google.cloud import secretmanager
    monkeypatch.setattr(secretmanager, "SecretManagerServiceClient", _FakeSecretManager)
    monkeypatch.setattr(secrets, "_SECRET_MANAGER_VALUES", {})
    monkeypatch.setattr(_FakeSecretManager, "calls", [])
    return _FakeSecretManager


@pytest.fixture
def launched(monkeypatch):
    """The PipelineResult of every pipeline run in the test (the dry-run jobs)."""
    results = []
    run = beam.Pipeline.run

    def capture(self, *args, **kwargs):
        result = run(self, *args, **kwargs)
        if not any(result is seen for seen in results):   # Beam's run() calls run() again
            results.append(result)
        return result

    monkeypatch.setattr(beam.Pipeline, "run", capture)
    return results


def _launcher():
    """``dataflow/main.py``, the flex template's launcher (not a package: loaded by path)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("talksync_launcher",
                                                  REPO / "dataflow" / "main.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("dataflow", sorted(available_dataflows()))
def test_launcher_dry_run_builds_the_job_without_waiting_and_without_secrets(
        dataflow, firestore_url, tmp_path, launched, monkeypatch, fake_secret_manager, caplog):
    """The flex template's launcher, on the DataflowRunner in dry-run mode, for each dataflow:
    the job is built, nothing waits for it, and no secret value is in the job, the options
    or the logs (Secret Manager is not even called: the workers resolve references)."""
    monkeypatch.setenv("TALKSYNC_DF_SHOP_KEY", SHOP_KEY)
    caplog.set_level(logging.DEBUG)
    config = _write_config(tmp_path / "talksync.yaml", firestore_url)
    monkeypatch.setattr(beam.runners.runner.PipelineResult, "wait_until_finish",
                        lambda self, duration=None: pytest.fail("the launcher waited"))
    argv = [arg for arg in DATAFLOW_ARGS if not arg.startswith("--runner")]   # its default
    argv += [f"--dataflow={dataflow}", f"--config={config}", f"--job_name=talksync-{dataflow}",
             "--run_id=dryrun", f"--runs_dir={tmp_path / 'runs'}"]
    section = _launcher().main(argv)
    assert section["dataflow"] == dataflow and section["state"] == "DONE"
    assert json.loads((tmp_path / "runs" / "dryrun" / "launch.json").read_text()) == section
    [result] = launched
    job = json.loads(result.job.json())
    assert job["name"] == f"talksync-{dataflow}" and job["type"] == "JOB_TYPE_BATCH"
    names = {t.unique_name for t in result.job.proto_pipeline.components.transforms.values()}
    for pair in available_dataflows()[dataflow].pairs:
        for step in ("Read source", "Read target", "LookUpLinks source", "LookUpLinks target",
                     "Plan", "ReserveLinks", "Write/KeyBySystemShard", "Write/Batch",
                     "Write/Write", "CommitLinks"):
            assert f"Sync {pair.name}/{step}" in names, (pair.name, step)
    assert fake_secret_manager.calls == []
    assert _leaks(result, argv, caplog.text) == {SHOP_KEY: [], BC_SECRET: [], NXT_SECRET: []}
    assert any(name.startswith("Advance watermarks") for name in names)


def test_sqlite_store_is_refused_on_dataflow_with_a_clear_message(tmp_path, monkeypatch,
                                                                   capsys):
    monkeypatch.setenv("TALKSYNC_DF_SHOP_KEY", SHOP_KEY)
    config = _write_config(tmp_path / "talksync.yaml", f"sqlite:///{tmp_path / 'links.db'}")
    argv = [*DATAFLOW_ARGS, "--dataflow=customerp-customwebshop", f"--config={config}"]
    with pytest.raises(ConfigError) as refused:
        sync_pipeline.run(argv, wait=False)
    message = str(refused.value)
    assert "SQLite" in message and "DataflowRunner" in message
    assert "firestore://PROJECT" in message
    beam = [f"--beam={arg[2:]}" for arg in DATAFLOW_ARGS]   # Beam's options, explicitly
    status = cli.main(["run", "customerp-customwebshop", "--config", config, *beam])
    assert status == cli.EXIT_USAGE
    assert "firestore://PROJECT" in capsys.readouterr().err


# --- secrets ------------------------------------------------------------------------------------

def _expanded(blob: bytes, depth: int = 0):
    """``blob`` and every base64 payload in it, decompressed (Beam pickles DoFns as base64 of
    bz2 or zlib), recursively: where a secret would hide in a job."""
    yield blob
    if depth > 3:
        return
    for match in re.finditer(rb"[A-Za-z0-9+/]{32,}={0,2}", blob):
        try:
            raw = base64.b64decode(match.group(), validate=True)
        except ValueError:
            continue
        yield raw
        for decompress in (bz2.decompress, zlib.decompress):
            try:
                yield from _expanded(decompress(raw), depth + 1)
            except (OSError, ValueError, zlib.error):
                pass


def _leaks(result, options_argv, log_text: str) -> dict[str, list[str]]:
    """Where each secret value appears: the job (proto, JSON), the options, the logs."""
    job = result.job
    return _scan({"job proto": (job.proto_pipeline.SerializeToString()
                                + type(job.proto).serialize(job.proto)),
                  "job json": job.json().encode(),
                  "pipeline options": json.dumps(
                      PipelineOptions(options_argv).get_all_options(), default=str).encode(),
                  "logs": log_text.encode()})


def _scan(places: dict[str, bytes]) -> dict[str, list[str]]:
    return {secret: [place for place, blob in places.items()
                     if any(secret.encode() in part for part in _expanded(blob))]
            for secret in (SHOP_KEY, BC_SECRET, NXT_SECRET)}


def test_secret_scan_finds_a_secret_in_a_pickled_dofn():
    """The scan above can fail: a plain-text key (accepted with a warning) would travel in a
    DoFn's settings, which the job carries pickled the way Beam pickles it (base64 of
    compressed bytes), and the scan finds it there."""
    from apache_beam.internal import pickler

    settings = SystemConfig("shop", "customwebshop", "https://s", {"api_key": SHOP_KEY})
    payload = b"\n\x08ParDo(x)\x12" + pickler.dumps(settings) + b"\x1a\x00"
    assert SHOP_KEY.encode() not in payload
    found = _scan({"job proto": payload, "logs": b"no secret here"})
    assert found[SHOP_KEY] == ["job proto"] and found[BC_SECRET] == []


def test_secret_manager_reference_is_read_once_through_the_client(fake_secret_manager):
    reference = f"secretmanager://{BC_SECRET_NAME}"
    assert secrets.resolve(reference) == BC_SECRET
    assert secrets.resolve(f"secretmanager://{NXT_SECRET_NAME}") == NXT_SECRET
    assert secrets.resolve(reference) == BC_SECRET
    assert fake_secret_manager.calls == [BC_SECRET_NAME, NXT_SECRET_NAME]


def test_unreadable_secret_names_the_reference_and_the_role(fake_secret_manager):
    name = "projects/demo-proj/secrets/missing/versions/1"
    with pytest.raises(secrets.SecretError) as refused:
        secrets.resolve(f"secretmanager://{name}")
    assert name in str(refused.value)
    assert "roles/secretmanager.secretAccessor" in str(refused.value)


def test_sharded_sync_with_secret_manager_keys_is_exact(harness, fake_secret_manager,
                                                        monkeypatch):
    """A sync of the product pair whose API keys come from Secret Manager, writing through 3
    shards per system: every product is created or linked once, in one batch per shard, the
    rerun writes nothing, and no key is in the run's files."""
    names = {system: f"projects/p/secrets/{system}-key/versions/1"
             for system in ("customwebshop", "customerp")}
    monkeypatch.setattr(_FakeSecretManager, "values", {
        names[system]: harness.sandbox.api_key(system) for system in names})
    for system, name in names.items():
        monkeypatch.delenv(f"TALKSYNC_SANDBOX_{system.upper()}_API_KEY")
        harness.configure(system, api_key=f"secretmanager://{name}", write_shards=3)
    status, first = harness.run("--pairs", "product")
    assert status == 0, first
    assert sorted(set(fake_secret_manager.calls)) == sorted(names.values())
    product = first["pairs"]["product"]
    assert product["created_in_source"] + product["created_in_target"] > 0
    assert product["linked_by_match"] > 0 and product["dead_letters"] == 0
    for system, resource, key in (("customwebshop", "products", "sku"),
                                  ("customerp", "Products", "ItemNo")):
        rows = harness.list_all(system, resource)
        assert all(len(same) == 1 for same in group_by(rows, key).values()), system
    # The seed's 186 product writes to the webshop go out as one batch per shard (3); one
    # shard would send them as 2 batches of at most 100.
    batches = [r for r in harness.sandbox.requests("customwebshop")["log"]
               if r["method"] == "POST" and r["path"].endswith("/products:batch")]
    assert len(batches) >= 3
    harness.clear_logs()
    status, second = harness.run("--pairs", "product")
    assert status == 0
    assert harness.writes("customwebshop") == {} and harness.writes("customerp") == {}
    files = b"".join(path.read_bytes() for path in harness.state.rglob("*") if path.is_file())
    for value in _FakeSecretManager.values.values():
        assert value.encode() not in files


# --- write keying --------------------------------------------------------------------------------

def test_write_shards_are_stable_and_bounded():
    ids = [f"link-{i}" for i in range(500)]
    shards = [write._shard(link_id, 4) for link_id in ids]
    assert set(shards) == {0, 1, 2, 3}
    assert shards == [write._shard(link_id, 4) for link_id in ids]      # every worker agrees
    assert {write._shard(link_id, 1) for link_id in ids} == {0}


@pytest.mark.parametrize("value,expected", [(None, write.DEFAULT_WRITE_SHARDS), (3, 3),
                                            ("2", 2)])
def test_write_shards_setting(value, expected):
    settings = {} if value is None else {"write_shards": value}
    assert write.write_shards(SystemConfig("erp", "customerp", "https://e", settings)) == expected


@pytest.mark.parametrize("value", [0, -1, "many", 2.5, True])
def test_write_shards_setting_must_be_a_positive_whole_number(value):
    with pytest.raises(ValueError, match="systems.erp.write_shards"):
        write.write_shards(SystemConfig("erp", "customerp", "https://e", {"write_shards": value}))


# --- the config from GCS -----------------------------------------------------------------------

class _FakeGcsIO:
    """Beam's ``GcsIO`` (the GCS client of ``GCSFileSystem``) over a dict of objects."""

    def __init__(self, objects):
        self._objects = objects

    def exists(self, path):
        return path in self._objects

    def open(self, path, mode="rb", mime_type=None):
        import io
        if mode == "rb":
            return io.BytesIO(self._objects[path])
        objects = self._objects

        class _Upload(io.BytesIO):
            def close(self):
                objects[path] = self.getvalue()
                super().close()

        return _Upload()


def test_config_is_read_from_gcs_through_beam_filesystems(tmp_path, monkeypatch):
    from apache_beam.io.gcp.gcsfilesystem import GCSFileSystem
    local = _write_config(tmp_path / "talksync.yaml", "firestore://demo-proj")
    objects = {"gs://demo-bucket/talksync.yaml": pathlib.Path(local).read_bytes()}
    monkeypatch.setattr(GCSFileSystem, "_gcsIO", lambda self: _FakeGcsIO(objects))
    config = load_config("gs://demo-bucket/talksync.yaml")
    assert config.path == "gs://demo-bucket/talksync.yaml"
    assert config.link_store == "firestore://demo-proj"
    assert config.system("businesscentral").settings["client_secret"] == (
        f"secretmanager://{BC_SECRET_NAME}")
    with pytest.raises(ConfigError, match="gs://demo-bucket/other.yaml: no such config file"):
        load_config("gs://demo-bucket/other.yaml")



def test_report_of_a_waiting_run_is_written_to_gcs(monkeypatch):
    from apache_beam.io.gcp.gcsfilesystem import GCSFileSystem
    objects = {}
    monkeypatch.setattr(GCSFileSystem, "_gcsIO", lambda self: _FakeGcsIO(objects))
    report = {"dataflows": [{"dataflow": "customerp-customwebshop", "run_id": "r1"}]}
    run_driver._write_json("gs://demo-bucket/runs/r1/report.json", report)
    assert json.loads(objects["gs://demo-bucket/runs/r1/report.json"]) == report
