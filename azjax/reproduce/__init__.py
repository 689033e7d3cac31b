"""The paper's experiments at workstation scale (`scripts/reproduce.py`, docs/reproducing.md).

Each experiment module has `run(cfg, workdir, log) -> summary` (its searches run or resume in
subfolders of workdir), `table(summary) -> str` (Markdown) and `plot(summary, workdir) -> paths`.
"""

from azjax.reproduce import backprop, fig4, s10_baseline

EXPERIMENTS = {"backprop": backprop, "fig4": fig4, "s10_baseline": s10_baseline}

__all__ = ["EXPERIMENTS"]
