"""Pipeline options of a sync run (``talksync run`` passes them; Dataflow templates too)."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions


class SyncOptions(PipelineOptions):
    """What to sync and how: the dataflow, the systems config, the link store, the mode."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument(
            "--dataflow", required=False,
            help="Name of the dataflow to run, e.g. customerp-customwebshop "
                 "(see `talksync dataflows`).")
        parser.add_argument(
            "--config", default="talksync.yaml",
            help="Path of the systems config (link store, base URLs, credential references). "
                 "Default: talksync.yaml.")
        parser.add_argument(
            "--link_store", default=None,
            help="Link store URL, overriding the config's link_store "
                 "(sqlite:///PATH for local runs).")
        parser.add_argument(
            "--mode", default="sync", choices=("sync", "plan"),
            help="sync: read, plan and write. plan: read and plan only, write nothing. "
                 "Default: sync.")
        parser.add_argument(
            "--full_rescan", default=False, action="store_true",
            help="Read every entity instead of only those changed since the last run.")
        parser.add_argument(
            "--pairs", default=None,
            help="Comma-separated pair names to run (default: every pair of the dataflow).")
        parser.add_argument(
            "--read_overlap_seconds", default=60, type=int,
            help="How far before the last watermark an incremental read starts, to catch "
                 "writes that committed out of timestamp order. Default: 60.")
        parser.add_argument(
            "--run_id", default=None,
            help="Identifier of this run (default: derived from the start time).")
        parser.add_argument(
            "--runs_dir", default=None,
            help="Folder (local or gs://) for run files: dead letters, conflicts, plan, "
                 "report. Default: the config's runs_dir.")
