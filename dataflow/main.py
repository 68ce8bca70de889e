"""The flex template's launcher: starts one talksync dataflow on Dataflow and returns.

The launcher image runs ``python main.py --dataflow=... --config=gs://... [Beam options]``
(``FLEX_TEMPLATE_PYTHON_PY_FILE``). It builds the job from the template parameters and submits
it without waiting for it to finish: a flex-template launch that blocks on
``wait_until_finish`` times out on long syncs.
"""

import json
import logging
import sys

from pipelines.sync_pipeline import run


def main(argv=None) -> None:
    logging.getLogger().setLevel(logging.INFO)
    launched = run(sys.argv[1:] if argv is None else argv, wait=False)
    logging.info("talksync: launched %s", json.dumps(launched, sort_keys=True))


if __name__ == "__main__":
    main()
