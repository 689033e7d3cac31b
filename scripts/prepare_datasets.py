"""Writes the projected binary datasets that `projected_binary` tasks read (docs/ops.md).

Reads real images from local files only (never downloads), then for every class pair i < j and
every seed in [min_data_seed, max_data_seed) writes
`binary_<dataset>-pos_<i>-neg_<j>-dim_<F>-seed_<s>.npz` into --output_dir.

Examples:
  python scripts/prepare_datasets.py --dataset=digits --output_dir=/tmp/binary_digits \
      --class_ids=0,1 --max_data_seed=5
  python scripts/prepare_datasets.py --dataset=cifar10 --data_dir=~/cifar-10-batches-py \
      --output_dir=/tmp/binary_cifar10_data
  python scripts/prepare_datasets.py --dataset=file --data_file=my_data.csv --class_ids=0,1 \
      --output_dir=/tmp/binary_my_data --projected_dim=8

--dataset=file reads your own examples: a .csv file (one example per row, the class id 0..9 in
the last column, an optional header line) or a .npz file (arrays x [n, d] and y [n]).
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

from azjax import datasets

_DATASET = flags.DEFINE_enum(
    "dataset",
    "digits",
    list(datasets.DATASET_NAMES),
    "Source images: digits (bundled with scikit-learn), mnist (idx files), cifar10 (python "
    "batches) or file (your own .csv or .npz file, --data_file).",
)
_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "Folder with the mnist / cifar10 input files (not needed for digits)."
)
_DATA_FILE = flags.DEFINE_string(
    "data_file",
    None,
    "The .csv (features, then the class id in the last column) or .npz (arrays x, y) file for "
    "--dataset=file.",
)
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder to write the .npz files to.")
_CLASS_IDS = flags.DEFINE_list(
    "class_ids", "0,1,2,3,4,5,6,7,8,9", "Classes to pair up (comma-separated ids in 0..9)."
)
_MIN_DATA_SEED = flags.DEFINE_integer(
    "min_data_seed", 0, "One file per seed in [min_data_seed, max_data_seed)."
)
_MAX_DATA_SEED = flags.DEFINE_integer(
    "max_data_seed", 100, "One file per seed in [min_data_seed, max_data_seed)."
)
_NUM_TRAIN = flags.DEFINE_integer("num_train_examples", 8000, "Training examples per file.")
_NUM_VALID = flags.DEFINE_integer("num_valid_examples", 1000, "Validation examples per file.")
_NUM_TEST = flags.DEFINE_integer("num_test_examples", 1000, "Test examples per file.")
_PROJECTED_DIM = flags.DEFINE_integer("projected_dim", 16, "F, the projected feature size.")


def _fail(message: str):
    sys.exit(f"prepare_datasets.py: error: {message}")


def main(argv):
    if len(argv) > 1:
        _fail(f"unexpected arguments {argv[1:]}")
    if not _OUTPUT_DIR.value:
        _fail("--output_dir is required")
    if _DATASET.value == "file":
        if not _DATA_FILE.value:
            _fail("--data_file is required for --dataset=file")
    elif _DATASET.value != "digits" and not _DATA_DIR.value:
        _fail(f"--data_dir is required for --dataset={_DATASET.value}")
    options = dict(
        dataset_name=_DATASET.value,
        min_data_seed=_MIN_DATA_SEED.value,
        max_data_seed=_MAX_DATA_SEED.value,
        num_train=_NUM_TRAIN.value,
        num_valid=_NUM_VALID.value,
        num_test=_NUM_TEST.value,
        projected_dim=_PROJECTED_DIM.value,
    )
    try:
        class_ids = [int(c) for c in _CLASS_IDS.value]
    except ValueError:
        _fail(f"--class_ids must be comma-separated integers, got {','.join(_CLASS_IDS.value)}")
    try:
        datasets.check_prepare_options(class_ids=class_ids, **options)  # Before slow reads.
        source = _DATA_FILE.value if _DATASET.value == "file" else _DATA_DIR.value
        data_dir = os.path.expanduser(source) if source else None
        images, labels = datasets.read_images(_DATASET.value, data_dir)
        written = datasets.prepare_binary_datasets(
            images, labels, out_dir=_OUTPUT_DIR.value, class_ids=class_ids, **options
        )
    except (ValueError, OSError) as err:
        _fail(str(err))
    print(
        f"wrote {len(written)} files to {_OUTPUT_DIR.value} ({images.shape[0]} {_DATASET.value} "
        f"examples of {images.shape[1]} features, projected to {_PROJECTED_DIM.value} dims)"
    )
    seeds = f"seed_{_MIN_DATA_SEED.value}..{_MAX_DATA_SEED.value - 1}"
    for f in written:
        if f.seed == _MIN_DATA_SEED.value:  # One line per class pair: its seeds share the sizes.
            name = datasets.binary_file_name(
                _DATASET.value, f.positive_class, f.negative_class, _PROJECTED_DIM.value, 0
            )
            note = " (shrunk: too few images per class)" if f.shrunk else ""
            print(
                f"  {name.replace('seed_0', seeds)}: train/valid/test = "
                f"{f.num_train}/{f.num_valid}/{f.num_test}{note}"
            )


if __name__ == "__main__":
    app.run(main)
