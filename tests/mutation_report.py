"""The mutation score per module, from the results mutmut left in mutants/ (`make mutation`).

mutmut prints one total for the whole run and lists the mutants that were not killed; the
project's targets are per module (docs/testing.md), so this reads mutmut's per-file results and
prints, for each mutated module: mutants, killed, survived and the score, killed / (killed +
survived). A timeout counts as killed (the mutant made the tests hang: caught), a mutant no
selected test calls ("no tests") counts as survived (nothing would catch it). With
``--survivors`` it also lists each surviving mutant's name, for ``mutmut show NAME``.

mutmut mutates whole modules, and some modules on the write path also hold read code (the
connectors read and write; the SQLite store also keeps watermarks and dead letters). Their
score counts only the write path's functions, :data:`WRITE_PATH`, chosen by the function (or
``Class.method``) each mutant's name contains, and the transforms' scores leave out their
pipeline wiring, :data:`WIRING`; ``--all`` adds a whole-module row for each of these modules.
docs/testing.md says what each selection covers.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "no tests"}

#: module -> the functions (``name`` or ``Class.name``, ``Class.*`` for every method) whose
#: mutants count in its score; a module not named here counts whole
WRITE_PATH: dict[str, tuple[str, ...]] = {
    # reserve -> write -> commit: reservations, commits and the state entries of the run lock
    # and of Exact's tokens (not watermarks, dead letters, look-ups, schema migration)
    "connectors/sqlite_store.py": (
        "_link_row", "_link", "SqliteLinkStore.reserve", "SqliteLinkStore.reserve_many",
        "SqliteLinkStore._reserve_row", "SqliteLinkStore.commit",
        "SqliteLinkStore._store_if_current", "SqliteLinkStore.read_state",
        "SqliteLinkStore.write_state", "SqliteLinkStore.delete_state"),
    # the one token call Exact's rotation goes through (client-credentials caching is read
    # path: tokens for reads and writes alike)
    "connectors/auth.py": ("grant",),
    # token rotation and the write encoding
    "connectors/exact.py": (
        "_grant", "_entry_value", "exchange_code", "tokens_key", "token_url", "ExactTokens.*",
        "to_wire", "_guid_literal", "ExactConnector.write", "ExactConnector._body",
        "ExactConnector._create", "ExactConnector._existing_item", "ExactConnector._update",
        "ExactConnector._change_lines", "_same"),
    "connectors/businesscentral.py": (
        "escape_enum", "_enums", "_Call.*", "BusinessCentralConnector.write",
        "BusinessCentralConnector._line_updates", "BusinessCentralConnector._current_orders",
        "BusinessCentralConnector._calls", "BusinessCentralConnector._new_line",
        "BusinessCentralConnector._line_calls", "BusinessCentralConnector._send",
        "BusinessCentralConnector._failed", "BusinessCentralConnector._find_by_number",
        "BusinessCentralConnector._batch", "_same"),
    "connectors/businessnxt.py": (
        "date_to_int", "_to_wire", "_Unit.*", "_in_field", "BusinessNxtConnector.write",
        "BusinessNxtConnector._adopt", "BusinessNxtConnector._send",
        "BusinessNxtConnector._read_back"),
    "connectors/customerp.py": (
        "CustomErpConnector.write", "CustomErpConnector._write", "CustomErpConnector._create",
        "CustomErpConnector._update"),
    "connectors/customwebshop.py": (
        "_to_wire", "CustomWebshopConnector.write", "CustomWebshopConnector._write_batch",
        "CustomWebshopConnector._operation", "CustomWebshopConnector._result"),
}


#: module -> pipeline wiring left out of its score: the ``expand`` of each PTransform (and the
#: ``__init__`` that only stores its arguments). Wiring is checked by running a pipeline
#: (tests/test_write_pipeline_units.py, end-to-end tests), 5 to 20 s a test: too slow to run
#: for each mutant of every DoFn those pipelines call, so it is not in the mutation run.
WIRING: dict[str, tuple[str, ...]] = {
    "transforms/write.py": ("ReserveLinks.expand", "ReserveLinks.__init__",
                            "WriteChanges.expand", "CommitLinks.expand", "CommitLinks.__init__"),
    "transforms/runlock.py": ("ReleaseRunLock.expand", "ReleaseRunLock.__init__"),
    "transforms/breaker.py": ("HoldMassChanges.expand",),
}


def function_of(mutant: str) -> str:
    """``Class.method`` or ``function`` of a mutant name (``pkg.mod.xǁClassǁmethod__mutmut_3``,
    ``pkg.mod.x_function__mutmut_3``)."""
    name = mutant.partition("__mutmut_")[0].rpartition(".")[2]
    if "ǁ" in name:
        _, cls, method = name.split("ǁ")
        return f"{cls}.{method}"
    return name.removeprefix("x_")


def counts(module: str, mutant: str) -> bool:
    """Whether ``mutant`` of ``module`` counts in the module's score (:data:`WRITE_PATH`,
    :data:`WIRING`)."""
    function = function_of(mutant)
    if function in WIRING.get(module, ()):
        return False
    selected = WRITE_PATH.get(module)
    if selected is None:
        return True
    return any(function == wanted or (wanted.endswith(".*") and
                                      function.startswith(wanted[:-1]))
               for wanted in selected)


def measured(results: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """``results`` with each module's mutants cut down to those that count."""
    return {module: {name: status for name, status in statuses.items()
                     if counts(module, name)}
            for module, statuses in results.items()}


def module_results(mutants_dir: pathlib.Path) -> dict[str, dict[str, str]]:
    """{module path: {mutant name: status}} for every file mutmut mutated."""
    from mutmut.stats import status_by_exit_code  # mutmut's own exit code → status table

    results = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        if exit_codes:
            module = meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")
            results[module] = {name: status_by_exit_code[code]
                               for name, code in exit_codes.items()}
    return results


def score_row(statuses: dict[str, str]) -> dict[str, int | float | None]:
    """Counts and score of one module's mutants (score None when none was tested)."""
    killed = sum(status in KILLED for status in statuses.values())
    survived = sum(status in SURVIVED for status in statuses.values())
    tested = killed + survived
    return {"mutants": len(statuses), "killed": killed, "survived": survived,
            "other": len(statuses) - tested,
            "score": round(100 * killed / tested, 1) if tested else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", type=pathlib.Path, default=pathlib.Path("mutants"))
    parser.add_argument("--survivors", action="store_true",
                        help="also list each surviving mutant (see one with `mutmut show NAME`)")
    parser.add_argument("--all", action="store_true",
                        help="also score the write path's modules whole (read code included)")
    args = parser.parse_args(argv)
    every = module_results(args.mutants)
    results = measured(every)
    if not results:
        print(f"no mutation results in {args.mutants}/: run `make mutation` first",
              file=sys.stderr)
        return 2
    print(f"{'module':<40} {'mutants':>7} {'killed':>7} {'survived':>8} {'other':>5} "
          f"{'score':>7}")
    rows = [(module + (" (write path)" if module in WRITE_PATH else
                       " (no wiring)" if module in WIRING else ""), statuses)
            for module, statuses in results.items()]
    if args.all:
        rows += [(module + " (whole)", every[module]) for module in every
                 if module in WRITE_PATH or module in WIRING]
    for label, statuses in rows:
        row = score_row(statuses)
        score = "-" if row["score"] is None else f"{row['score']:.1f} %"
        print(f"{label:<40} {row['mutants']:>7} {row['killed']:>7} {row['survived']:>8} "
              f"{row['other']:>5} {score:>7}")
    if args.survivors:
        for statuses in results.values():
            for name, status in statuses.items():
                if status in SURVIVED:
                    print(f"{status:<9} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
