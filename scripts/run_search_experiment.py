"""Runs AutoML-Zero search experiments (the counterpart of run_search_experiment.cc).

    python scripts/run_search_experiment.py --config=configs/demo.py
    python scripts/run_search_experiment.py --config=configs/demo.py --config.random_seed=7 \\
        --config.population_size=500 --workdir=/tmp/demo7

The workdir holds log.jsonl, checkpoint.npz, config.json, best_program.{txt,json} and
results.json. Re-running the same command resumes from the checkpoint (exactly, after a kill).
"""

import os
import shutil
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from azjax import checkpoint, config, datasets, experiment, runtime

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(os.path.dirname(__file__), "..", "configs", "demo.py"),
    "Experiment config file (a get_config() module); override fields with --config.NAME=VALUE.",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default: workdir/<config name>[-seed<random_seed>])."
)
_FRESH = flags.DEFINE_bool("fresh", False, "Delete the workdir's checkpoint and start over.")
_PROGRESS_BAR = flags.DEFINE_bool(
    "progress_bar", None, "Show a progress bar (default: when stdout is a terminal)."
)
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "CPU devices to shard populations over (default: one per core)."
)


def _fail(message: str):
    print(f"run_search_experiment.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)  # Hide JAX's backend-probing INFO lines.
    runtime.configure(num_cpu_devices=_CPU_DEVICES.value)
    cfg = _CONFIG.value
    try:
        exp = config.build(cfg)
    except config.ConfigError as e:
        _fail(str(e))
    seed = int(cfg.random_seed)
    workdir = _WORKDIR.value or os.path.join(
        "workdir", cfg.get("name", "run") + (f"-seed{seed}" if seed else "")
    )
    try:
        if _FRESH.value and os.path.exists(workdir):
            shutil.rmtree(workdir)
        bar = sys.stdout.isatty() if _PROGRESS_BAR.value is None else _PROGRESS_BAR.value
        log = print if bar else lambda line: print(line, flush=True)  # print: above the bar.
        experiment.run(exp, workdir=workdir, log=log, progress_bar=bar)
    except (checkpoint.CheckpointError, datasets.DatasetError) as e:
        _fail(str(e))
    except experiment.Interrupted as e:
        print(f"run_search_experiment.py: {e}", file=sys.stderr)
        sys.exit(130)
    except OSError as e:  # An unwritable workdir, a full disk: the last checkpoint is intact.
        _fail(f"{e.filename or workdir}: {e.strerror or e}")
    print(f"Outputs in {workdir}")


if __name__ == "__main__":
    app.run(main, flags_parser=config.parse_flags)
