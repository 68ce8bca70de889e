"""The mutation score per module, from the results mutmut left in mutants/ (`make mutation`).

mutmut prints one total for the whole run and lists the mutants that were not killed; the
project's targets are per module (docs/testing.md), so this reads mutmut's per-file results and
prints, for each mutated module: mutants, killed, survived and the score, killed / (killed +
survived). A timeout counts as killed (the mutant made the tests hang: caught), a mutant no
selected test calls ("no tests") counts as survived (nothing would catch it). With
``--survivors`` it also lists each surviving mutant's name, for ``mutmut show NAME``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

KILLED = {"killed", "timeout", "caught by type check"}
SURVIVED = {"survived", "no tests"}


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
    args = parser.parse_args(argv)
    results = module_results(args.mutants)
    if not results:
        print(f"no mutation results in {args.mutants}/: run `make mutation` first",
              file=sys.stderr)
        return 2
    print(f"{'module':<32} {'mutants':>7} {'killed':>7} {'survived':>8} {'other':>5} "
          f"{'score':>7}")
    for module, statuses in results.items():
        row = score_row(statuses)
        score = "-" if row["score"] is None else f"{row['score']:.1f} %"
        print(f"{module:<32} {row['mutants']:>7} {row['killed']:>7} {row['survived']:>8} "
              f"{row['other']:>5} {score:>7}")
    if args.survivors:
        for statuses in results.values():
            for name, status in statuses.items():
                if status in SURVIVED:
                    print(f"{status:<9} {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
