"""Reproduces the paper's experiments at workstation scale (docs/reproducing.md).

    python scripts/reproduce.py --experiment=fig4
    python scripts/reproduce.py --experiment=backprop --config.points.d1.max_individuals=500000
    python scripts/reproduce.py --experiment=s10_baseline

Each experiment's config is configs/paper/<experiment>.py (override fields with
--config.FIELD=VALUE, or pass another file with --config=PATH). The workdir (default
workdir/paper/<config file name>, e.g. workdir/paper/fig4) gets results.json, table.md and the
plots; every search in it checkpoints, so re-running the same command resumes (exactly, after a
kill), and a finished experiment only re-reads its results. --fresh starts over.
"""

import json
import os
import platform
import shutil
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from azjax import checkpoint, config, datasets, experiment, runtime

_NAMES = ("backprop", "fig4", "s10_baseline")


def _experiment_in_argv() -> str:
    """The --experiment value, read before flags are parsed: it picks the default config file."""
    for i, arg in enumerate(sys.argv):
        if arg.startswith("--experiment="):
            return arg.split("=", 1)[1]
        if arg == "--experiment" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return "fig4"


_EXPERIMENT = flags.DEFINE_enum("experiment", "fig4", list(_NAMES), "The experiment to run.")
_default = _experiment_in_argv()
_CONFIG = config_flags.DEFINE_config_file(
    "config",
    os.path.join(
        os.path.dirname(__file__),
        "..",
        "configs",
        "paper",
        f"{_default if _default in _NAMES else 'fig4'}.py",
    ),
    "The experiment's config (default configs/paper/<experiment>.py); --config.FIELD=VALUE.",
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Output directory (default: workdir/paper/<config file name>)."
)
_FRESH = flags.DEFINE_bool("fresh", False, "Delete the workdir and start over.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", None, "CPU devices to shard populations over (default: one per core)."
)


def _fail(message: str):
    print(f"reproduce.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def _machine() -> dict:
    import jax

    devices = jax.devices()
    return dict(
        platform=devices[0].platform,
        devices=len(devices),
        device_kind=devices[0].device_kind,
        cpu_count=os.cpu_count(),
        processor=platform.processor() or platform.machine(),
        jax=jax.__version__,
    )


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    name = _EXPERIMENT.value
    cfg = _CONFIG.value
    if cfg.get("experiment") != name:
        _fail(f"--config is a {cfg.get('experiment')!r} config, not {name!r}")
    runtime.configure(num_cpu_devices=_CPU_DEVICES.value)
    from azjax import reproduce  # After runtime.configure: it imports jax.

    module = reproduce.EXPERIMENTS[name]
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    stem = os.path.splitext(os.path.basename(config_file))[0]
    workdir = _WORKDIR.value or os.path.join("workdir", "paper", stem)
    log = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if _FRESH.value and os.path.exists(workdir):
            shutil.rmtree(workdir)
        os.makedirs(workdir, exist_ok=True)
        summary = module.run(cfg, workdir, log)
        summary["machine"] = _machine()
        summary["config"] = cfg.to_dict()
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump(summary, f, indent=2, default=float)
        text = module.table(summary)
        with open(os.path.join(workdir, "table.md"), "w") as f:
            f.write(text + "\n")
        plots = module.plot(summary, workdir)
    except (config.ConfigError, checkpoint.CheckpointError, datasets.DatasetError) as e:
        _fail(str(e))
    except experiment.Interrupted as e:
        print(f"reproduce.py: {e}", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        _fail(f"{e.filename or workdir}: {e.strerror or e}")
    print(text)
    names = ", ".join(["results.json", "table.md"] + [os.path.basename(p) for p in plots])
    print(f"Outputs in {workdir}: {names}")


if __name__ == "__main__":
    app.run(main, flags_parser=config.parse_flags)
