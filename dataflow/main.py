"""The flex template's launcher: starts one talksync dataflow on Dataflow and returns.

The launcher image runs ``python main.py --dataflow=... --config=gs://... [Beam options]``
(``FLEX_TEMPLATE_PYTHON_PY_FILE``). It builds the job from the template parameters, submits it
without waiting for it to finish (a flex-template launch that blocks on ``wait_until_finish``
times out on long syncs), and records the job in ``RUN_DIR/launch.json`` next to the run's
dead letters, conflicts and plan, so a run id leads to its Dataflow job.
"""

import json
import logging
import sys

from apache_beam.io.filesystems import FileSystems

from pipelines.sync_pipeline import run


def main(argv=None) -> dict:
    logging.getLogger().setLevel(logging.INFO)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(arg == "--runner" or arg.startswith("--runner=") for arg in argv):
        argv.insert(0, "--runner=DataflowRunner")   # this launcher only ever starts Dataflow jobs
    launched = run(argv, wait=False)
    text = json.dumps(launched, indent=2, sort_keys=True) + "\n"
    with FileSystems.create(f"{launched['run_dir'].rstrip('/')}/launch.json") as handle:
        handle.write(text.encode("utf-8"))
    logging.info("talksync: launched %s", text)
    return launched


if __name__ == "__main__":
    main()
