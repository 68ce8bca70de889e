"""The run lock as a job that nobody waits for holds it: the pipeline gives it back itself.

A Dataflow launch (``dataflow/main.py``) calls :func:`pipelines.sync_pipeline.run` with
``wait=False``: no driver renews the lock and no driver ``finally`` releases it. Only the
pipeline's last step, :class:`transforms.runlock.ReleaseRunLock`, does; were it a no-op, the next
scheduled run would be refused for the lock's whole lifetime (issue 19). On the in-process
runner ``p.run()`` runs the job to its end, so after ``run(..., wait=False)`` returns, the lock
entry is exactly what the pipeline left. The lock must also be held while writes are in flight.
"""

from __future__ import annotations

from connectors.customwebshop import CustomWebshopConnector
from connectors.stores import open_link_store
from pipelines import sync_pipeline
from transforms.runlock import RunLock, lock_key

DATAFLOW = "customerp-customwebshop"


def _launch(harness, run_id: str) -> dict:
    """What the flex-template launcher does: run without waiting, on the local runner."""
    return sync_pipeline.run([f"--dataflow={DATAFLOW}", f"--config={harness.config}",
                              f"--run_id={run_id}", f"--runs_dir={harness.state / 'runs'}",
                              "--pairs=customer"], wait=False)


def _link_store(harness) -> str:
    return f"sqlite:///{harness.sandbox.state_dir / 'links.db'}"


def test_a_launch_that_does_not_wait_is_unlocked_by_its_own_pipeline(harness, monkeypatch):
    holders_during_writes = []
    write = CustomWebshopConnector.write

    def write_and_look_at_the_lock(self, ops):
        with open_link_store(_link_store(harness)) as store:
            held = store.read_state(lock_key(DATAFLOW))
        holders_during_writes.append(held.value["run_id"] if held else None)
        return write(self, ops)

    monkeypatch.setattr(CustomWebshopConnector, "write", write_and_look_at_the_lock)

    section = _launch(harness, "launched-1")

    assert section["run_id"] == "launched-1"
    assert holders_during_writes and set(holders_during_writes) == {"launched-1"}
    with open_link_store(_link_store(harness)) as store:
        assert store.read_state(lock_key(DATAFLOW)) is None     # given back by the pipeline
        # so the next scheduled run starts at once (no lifetime to wait out)
        RunLock(DATAFLOW, "next-run", host="elsewhere").acquire(store)
