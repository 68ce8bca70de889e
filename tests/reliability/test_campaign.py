"""The fast subset of the fault campaign that `make test` runs (the full one: `make reliability`).

``TALKSYNC_CAMPAIGN_SEEDS`` overrides the seeds (``TALKSYNC_CAMPAIGN_SEEDS=17``). Unlike the
full campaign, where the seed's draws decide, every seed here runs at least two rounds and its
first run is SIGKILLed while it writes; so a seed of the full campaign is rerun exactly with
``python -m tests.reliability.campaign --seeds 17``, and one of this subset with
``--seeds 1 --min-rounds 2 --kill-first-round``.
"""

import os

import pytest

from tests.reliability.campaign import _parse_seeds, run_seed

#: `make test` starts this module among the first (tests/conftest.py): it takes minutes
pytestmark = pytest.mark.long_module

SEEDS = _parse_seeds(os.environ.get("TALKSYNC_CAMPAIGN_SEEDS", "1,2"))
#: the systems' ``retry_backoff_s`` here, instead of the client's 0.5 s (then doubling per
#: retry): every retry still happens (the emulators draw their faults per request, from the
#: seed, not from the clock), but seed 2's faulty run slept 62 of its 92 s in backoff
#: (measured 2026-12-07), and its SIGKILLed run, a process of its own, took up to 160 s under
#: CI's load before the setting reached it through the config. The backoff itself is tested
#: in tests/test_http.py; `make reliability` keeps the client's own.
_SHORT_BACKOFF_S = 0.02


@pytest.mark.parametrize("seed", SEEDS)
def test_faults_crashes_and_edits_then_one_clean_run_converges(seed):
    """At least two rounds, the first run SIGKILLed while it writes, and in every round a
    customer and a product edited on both sides (the later edit must win)."""
    run_seed(seed, log=print, min_rounds=2, kill_first_round=True,
             retry_backoff_s=_SHORT_BACKOFF_S)
