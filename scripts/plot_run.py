"""Plots a search run from its workdir's log.jsonl (needs matplotlib: pip install azjax[plot]).

    python scripts/plot_run.py --workdir=workdir/demo
    python scripts/plot_run.py --workdir=workdir/demo --out_dir=/tmp/plots

Writes fitness.png, work.png and, when the log records program sizes, size.png (see
`azjax.plot`), into the workdir unless --out_dir is given, and prints their paths.
"""

import os
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A run's output directory (holds log.jsonl).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where to write the PNGs (default: the workdir).")


def _fail(message: str):
    print(f"plot_run.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    workdir = _WORKDIR.value
    if not workdir:
        _fail("--workdir is required (a run's output directory)")
    if not os.path.isdir(workdir):
        _fail(f"workdir {workdir} does not exist")
    log = os.path.join(workdir, "log.jsonl")
    if not os.path.isfile(log):
        _fail(f"workdir {workdir} has no log.jsonl (not a run's output directory?)")
    from azjax import plot  # After the checks: importing azjax (and JAX) takes seconds.

    try:
        written = plot.plot_run(log, _OUT_DIR.value or workdir)
    except ImportError as e:
        _fail(f"{e.name or 'matplotlib'} is not installed: pip install 'azjax[plot]'")
    except (plot.LogError, OSError) as e:
        _fail(str(e))
    for path in written:
        print(path)


if __name__ == "__main__":
    app.run(main)
