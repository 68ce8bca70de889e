"""The command line at its edges: nothing is guessed, bad config and refused credentials stop a
run before it reads or writes anything, `talksync check`, Ctrl-C and closed pipes.

Each test drives `talksync` as a user does (in-process through ``cli.main`` against the
sandbox over HTTP, or as a subprocess where signals and pipes matter) and checks the sandbox's
request log for what reached the systems.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipelines import arguments, cli

REPO = pathlib.Path(__file__).resolve().parents[1]
FLOW = "customerp-customwebshop"


def _requests_made(harness) -> dict[str, int]:
    return {system: harness.sandbox.requests(system)["count"]
            for system in ("customerp", "customwebshop")}


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


# --- no option is guessed --------------------------------------------------------------------

@pytest.mark.parametrize("typo,meant", [
    ("--plann", "--plan"), ("--dry-run", "--plan"), ("--ful", "--full"),
    ("--max-updates-per-pair=5", "--max_updates_per_pair"), ("--confirm_mass_change", None),
])
def test_an_unknown_option_exits_2_with_a_suggestion_and_nothing_runs(harness, capsys, typo,
                                                                      meant):
    harness.sandbox.clear_requests("customerp")
    harness.sandbox.clear_requests("customwebshop")
    status = cli.main(["run", FLOW, "--config", harness.config, typo])
    err = capsys.readouterr().err
    assert status == 2
    assert f"unknown option {typo.split('=')[0]}" in err
    if meant:
        assert f"did you mean {meant}" in err
    assert len(err.strip().splitlines()) == 1, err
    _no_traceback(err)
    assert _requests_made(harness) == {"customerp": 0, "customwebshop": 0}


@pytest.mark.parametrize("every", ["-5", "0", "9.5", "nan", "soon"])
def test_every_below_the_minimum_exits_2(tmp_path, capsys, every):
    assert cli.main(["run", FLOW, "--config", str(tmp_path / "none.yaml"),
                     "--every", every]) == 2
    err = capsys.readouterr().err
    assert "--every" in err and len(err.strip().splitlines()) == 1


def test_beam_options_pass_only_through_beam_and_are_checked():
    assert arguments.beam_flags(["direct_running_mode=multi_processing",
                                 "direct_num_workers=2"]) == [
        "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    with pytest.raises(arguments.UsageError, match="did you mean direct_running_mode"):
        arguments.beam_flags(["direct_runing_mode=in_memory"])
    with pytest.raises(arguments.UsageError, match="invalid choice: 'fast'"):
        arguments.beam_flags(["direct_running_mode=fast"])
    with pytest.raises(arguments.UsageError, match="invalid int value"):
        arguments.beam_flags(["direct_num_workers=two"])
    with pytest.raises(arguments.UsageError, match="is a talksync option; give it as "
                                                   "--max_updates_per_pair"):
        arguments.beam_flags(["max_updates_per_pair=5"])


def test_a_beam_option_outside_beam_is_refused_before_the_run(harness, capsys):
    harness.sandbox.clear_requests("customerp")
    assert cli.main(["run", FLOW, "--config", harness.config, "--direct_num_workers=2"]) == 2
    assert "unknown option --direct_num_workers" in capsys.readouterr().err
    assert cli.main(["run", FLOW, "--config", harness.config, "--beam",
                     "direct_num_workers=many"]) == 2
    assert "--beam direct_num_workers=many: argument --direct_num_workers: invalid int value" \
        in capsys.readouterr().err
    assert harness.sandbox.requests("customerp")["count"] == 0


def test_run_help_lists_every_option_the_readme_lists(capsys):
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("| option | meaning |"):]
    table = table[:table.index("\n\n")]
    listed = set(re.findall(r"`(--[a-z_\-]+)", table))
    assert {"--plan", "--full", "--every", "--beam", "--max_updates_per_pair"} <= listed
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    help_text = capsys.readouterr().out
    for option in sorted(listed):
        assert option in help_text, f"{option} is in README but not in `talksync run --help`"


def test_tuning_options_take_their_defaults_from_the_sync_options():
    args = cli._parse(["run", FLOW])
    from apache_beam.options.pipeline_options import PipelineOptions

    from pipelines.options import SyncOptions
    defaults = PipelineOptions([]).view_as(SyncOptions)
    for name in cli._TUNING_OPTIONS:
        assert getattr(args, name) == getattr(defaults, name), name
    assert cli._parse(["run", FLOW, "--confirm_mass_changes"]).confirm_mass_changes is True


# --- the config is checked before the first request ------------------------------------------

def _config(harness, system: str, **settings) -> str:
    path = pathlib.Path(harness.config)
    config = yaml.safe_load(path.read_text())
    config["systems"][system].update(settings)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return str(path)


@pytest.mark.parametrize("setting,value,message", [
    ("type", "customerpp", "systems.customerp.type: unknown type 'customerpp'; use one of"),
    ("api_key", "${TALKSYNC_TEST_UNSET_KEY}",
     "systems.customerp.api_key: environment variable TALKSYNC_TEST_UNSET_KEY is not set"),
    ("api_key", "secretmanager://projects/p/secrets/erp-key",
     "systems.customerp.api_key: malformed secret reference secretmanager://projects/p/"
     "secrets/erp-key; expected secretmanager://projects/PROJECT/secrets/NAME/versions/VERSION"),
    ("base_url", "http:///erp/v1", "systems.customerp.base_url: 'http:///erp/v1' is not an "
                                   "http(s) URL with a host"),
    ("token_url", "localhost:80/token", "systems.customerp.token_url"),
])
@pytest.mark.parametrize("mode", [[], ["--plan"]], ids=["sync", "plan"])
def test_a_bad_setting_exits_2_naming_it_before_any_request(harness, capsys, monkeypatch,
                                                            setting, value, message, mode):
    monkeypatch.delenv("TALKSYNC_TEST_UNSET_KEY", raising=False)
    config = _config(harness, "customerp", **{setting: value})
    harness.sandbox.clear_requests("customerp")
    harness.sandbox.clear_requests("customwebshop")
    assert cli.main(["run", FLOW, "--config", config, *mode]) == 2
    err = capsys.readouterr().err
    assert message in err
    _no_traceback(err)
    assert [line for line in err.splitlines() if "error" in line] == \
        [line for line in err.splitlines() if message in line]
    assert _requests_made(harness) == {"customerp": 0, "customwebshop": 0}


@pytest.mark.parametrize("mode", [[], ["--plan"]], ids=["sync", "plan"])
def test_a_refused_api_key_stops_the_run_with_exit_2_once(harness, capsys, monkeypatch, mode):
    monkeypatch.setenv("TALKSYNC_TEST_WRONG_KEY", "not-the-key")
    config = _config(harness, "customerp", api_key="${TALKSYNC_TEST_WRONG_KEY}")
    harness.sandbox.clear_requests("customerp")
    harness.sandbox.clear_requests("customwebshop")
    assert cli.main(["run", FLOW, "--config", config, *mode]) == 2
    err = capsys.readouterr().err
    assert err.count("systems.customerp.api_key was refused (HTTP 401)") == 1, err
    assert "not-the-key" not in err
    _no_traceback(err)
    assert harness.writes("customerp") == {} and harness.writes("customwebshop") == {}
    assert harness.sandbox.requests("customerp")["count"] == 1   # the probe, not retried


def test_an_unreachable_system_is_reported_once_and_its_dataflows_not_run(harness, capsys,
                                                                         refused_port):
    port = refused_port
    config = _config(harness, "customerp", base_url=f"http://127.0.0.1:{port}/erp/v1",
                     max_retries=1)
    harness.sandbox.clear_requests("customwebshop")
    for mode in ([], ["--plan"]):
        assert cli.main(["run", FLOW, "--config", config, *mode]) == 1
        err = capsys.readouterr().err
        assert err.count(f"systems.customerp could not be reached at "
                         f"http://127.0.0.1:{port}/erp/v1") == 1, err
        assert f"{FLOW} not run: customerp cannot be read now" in err
        _no_traceback(err)
    assert harness.writes("customwebshop") == {}


# --- talksync check ---------------------------------------------------------------------------

def _check_rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines()[1:] if line.strip()}


def test_check_reads_each_system_once_and_opens_the_link_store(harness, capsys):
    harness.sandbox.clear_requests("customerp")
    harness.sandbox.clear_requests("customwebshop")
    assert cli.main(["check", "--config", harness.config]) == 0
    rows = _check_rows(capsys.readouterr().out)
    assert rows["customerp"][:3] == ["customerp", "customerp", "ok"]
    assert rows["customwebshop"][:3] == ["customwebshop", "customwebshop", "ok"]
    assert rows["link"][:4] == ["link", "store", "sqlite", "ok"]
    for system in ("customerp", "customwebshop"):
        log = harness.sandbox.requests(system)
        assert log["count"] == 1 and set(log["by_method"]) == {"GET"}, log


def test_check_exits_2_for_refused_credentials_and_1_for_an_unreachable_system(
        harness, capsys, monkeypatch):
    monkeypatch.setenv("TALKSYNC_TEST_WRONG_KEY", "not-the-key")
    _config(harness, "customwebshop", api_key="${TALKSYNC_TEST_WRONG_KEY}")
    assert cli.main(["check", "--config", harness.config]) == 2
    out = capsys.readouterr().out
    assert _check_rows(out)["customwebshop"][2] == "refused"
    assert "systems.customwebshop.api_key was refused (HTTP 401)" in out
    assert _check_rows(out)["customerp"][2] == "ok"
    _config(harness, "customwebshop", api_key=os.environ[
        next(name for name in harness.sandbox.environ() if "CUSTOMWEBSHOP" in name)])
    _config(harness, "customerp", base_url="http://127.0.0.1:9/erp/v1", max_retries=0)
    assert cli.main(["check", "--config", harness.config]) == 1
    rows = _check_rows(capsys.readouterr().out)
    assert rows["customerp"][2] == "unreachable" and rows["customwebshop"][2] == "ok"


def test_check_says_when_exact_has_no_stored_tokens(sandbox_of, tmp_path, capsys):
    running = sandbox_of("exact")
    assert cli.main(["check", "--config", str(running.config_path)]) == 2
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("exact "))
    assert "no consent" in row and "talksync auth exact --system exact" in row


def test_check_reports_a_bad_setting_as_a_config_row(harness, capsys, monkeypatch):
    monkeypatch.delenv("TALKSYNC_TEST_UNSET_KEY", raising=False)
    _config(harness, "customerp", api_key="${TALKSYNC_TEST_UNSET_KEY}")
    assert cli.main(["check", "--config", harness.config]) == 2
    out = capsys.readouterr().out
    assert _check_rows(out)["customerp"][2] == "config"
    assert "TALKSYNC_TEST_UNSET_KEY is not set" in out


# --- interruptions and pipes ----------------------------------------------------------------------

def _talksync(*args, env=None, **kwargs) -> subprocess.Popen:
    environ = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "pipelines.cli", *args], env=environ,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_ctrl_c_exits_130_with_one_line(harness):
    process = _talksync("run", FLOW, "--config", harness.config, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    seen = ""
    while "syncing" not in seen and time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:                    # ended before it synced: say how, not "exit 0"
            break
        seen += line
    assert "syncing" in seen, seen
    process.send_signal(signal.SIGINT)
    err = seen + process.stderr.read()
    assert process.wait(timeout=120) == 130
    assert "talksync: interrupted (exit 130)" in err
    _no_traceback(err)


def test_a_closed_pipe_ends_quietly():
    process = _talksync("dataflows", stdout=subprocess.PIPE)
    process.stdout.close()           # the reader is gone before talksync writes
    err = process.stderr.read()
    assert process.wait(timeout=60) == 141
    assert err == "", err


def test_a_system_that_answers_the_check_with_an_error_is_still_run_pair_by_pair(harness,
                                                                                 capsys):
    """Not refused and not unreachable: a 500 or a garbled page stops only the pairs whose
    reads meet it (decision 0011), so the check warns and the run goes on."""
    _config(harness, "customwebshop", max_retries=0)
    harness.sandbox.set_faults("customwebshop", error_rate=1.0, status=500, only=["GET"],
                               seed=1)
    status, report = harness.run()
    harness.sandbox.set_faults("customwebshop")
    err = capsys.readouterr().err
    assert "talksync: warning: systems.customwebshop answered the check with an error " \
           "(HTTP 500)" in err
    assert status == 3 and set(report["pairs"]) == {"customer", "product", "order"}
    assert harness.writes("customerp") == {}
