"""Projected binary datasets: image readers, the file writer and the checked loader.

The counterpart of the original's `generate_datasets.py` (docs/ops.md). For every pair of
classes i < j and every seed, the first images of each class are relabelled (smaller id -> 1),
split stratified into train / valid / test, projected to F dimensions by a seeded Gaussian matrix
and standardized on the training split. Each (pair, seed) becomes one `.npz` file that
`azjax.tasks` reads for `projected_binary` tasks.

Images come from local files only; nothing is ever downloaded:
  * "cifar10": the CIFAR-10 python batches `data_batch_1` .. `data_batch_5` in a directory;
  * "mnist": `train-images-idx3-ubyte[.gz]` and `train-labels-idx1-ubyte[.gz]` in a directory;
  * "digits": scikit-learn's bundled 8x8 digits (`sklearn.datasets.load_digits`), 10 classes of
    about 180 images, so everything runs with nothing downloaded;
  * "file": your own examples, one `.npz` (arrays `x` [n, d] and `y` [n]) or `.csv` file (one
    example per row, the class id in the last column, an optional header line), read by
    `read_array_file`; class ids are integers 0..9.

Deviations from the original: files are `.npz` (not a `ScalarLabelDataset` proto, and named with a
`.npz` suffix); inputs come from local files rather than tfds; a class with fewer images than
requested (every digits class) is used whole and the three split sizes shrink proportionally,
recorded in the file's metadata.
"""

from __future__ import annotations

import gzip
import logging
import os
import pickle
import tempfile
import zlib
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "cifar10", "file")
NUM_CLASSES = 10
SPLIT_ARRAYS: tuple[str, ...] = ("x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test")
_LOADED_ARRAYS = SPLIT_ARRAYS[:4]  # x_test / y_test are written for completeness, never read.
_MIN_SPLIT = 2  # A stratified split of two classes needs at least two examples per part.
_CIFAR_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_MNIST_FILES = {
    "images": ("train-images-idx3-ubyte", 2051),
    "labels": ("train-labels-idx1-ubyte", 2049),
}
_NPZ_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"\x93NUMPY")  # zip (.npz), empty zip, .npy.
_CREATE_HINT = "create it with scripts/prepare_datasets.py (see its --help)"

_log = logging.getLogger(__name__)


class DatasetError(ValueError):
    """A dataset or image file that is missing, unreadable or malformed.

    The message is one line and starts with the file's path. Options that are wrong whatever
    the files hold (`check_prepare_options`) raise a plain ValueError instead.
    """


class BinaryDataset(NamedTuple):
    """The arrays one task uses: x [E, F] / [Ev, F] float32, y [E] / [Ev] float32 in {0, 1}."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray


class PreparedFile(NamedTuple):
    """One file written by `prepare_binary_datasets`, with the split sizes it holds."""

    path: str
    positive_class: int
    negative_class: int
    seed: int
    num_train: int
    num_valid: int
    num_test: int
    shrunk: bool


def binary_file_name(
    dataset_name: str, positive_class: int, negative_class: int, feature_size: int, seed: int
) -> str:
    """The original's file name (docs/ops.md) plus `.npz`."""
    return (
        f"binary_{dataset_name}-pos_{positive_class}-neg_{negative_class}"
        f"-dim_{feature_size}-seed_{seed}.npz"
    )


# ----------------------------------------------------------------------------------------------
# Readers: (images float64 [n, d] raw pixel values, labels int64 [n]).


def read_images(dataset_name: str, data_dir: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reads the training images of `dataset_name` ("digits" needs no `data_dir`; for "file",
    `data_dir` is the path of the `.npz` or `.csv` file)."""
    if dataset_name == "digits":
        return read_digits()
    if dataset_name not in DATASET_NAMES:
        raise ValueError(f"dataset_name must be one of {DATASET_NAMES}, got {dataset_name!r}")
    if not data_dir:
        what = "the path of the .npz or .csv file" if dataset_name == "file" else "the folder"
        raise ValueError(f"dataset {dataset_name!r} needs data_dir, {what} holding its examples")
    if dataset_name == "file":
        x, y = read_array_file(data_dir)
        if not np.all((y == np.round(y)) & (y >= 0) & (y < NUM_CLASSES)):
            raise ValueError(f"{data_dir}: class ids must be integers in 0..{NUM_CLASSES - 1}")
        return x, y.astype(np.int64)
    return read_cifar10(data_dir) if dataset_name == "cifar10" else read_mnist(data_dir)


def read_array_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Examples from a `.npz` file (arrays `x` or `X` [n, d], and `y` [n]) or a `.csv` file (one
    example per row, features then the label in the last column; a first line that is not
    numeric is a header and skipped). Returns (x float64 [n, d], y float64 [n]).

    Raises:
      ValueError naming the file and the problem (missing, another format, missing arrays,
      shapes, non-numeric or non-finite values).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: np.asarray(data[name]) for name in data.files}
        except Exception as err:  # np.load raises many types on a corrupt or foreign file.
            raise ValueError(f"{path}: not a readable .npz file ({err})") from err
        x = arrays.get("x", arrays.get("X"))
        if x is None or "y" not in arrays:
            raise ValueError(f"{path}: needs arrays 'x' (or 'X') and 'y', has {sorted(arrays)}")
        y = arrays["y"]
    elif path.endswith(".csv"):
        x, y = _read_csv(path)
    else:
        raise ValueError(f"{path}: expected a .npz or .csv file")
    try:
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: x and y must be numeric ({err})") from err
    if x.ndim != 2 or y.shape != x.shape[:1] or not len(y):
        raise ValueError(f"{path}: x {x.shape} and y {y.shape} must be [n, d] and [n], n >= 1")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError(f"{path}: has non-finite values (NaN or inf)")
    return x, y


def _read_csv(path: str) -> tuple[np.ndarray, np.ndarray]:
    with open(path) as f:
        lines = [f.readline(), f.readline()]
    try:
        [float(v) for v in lines[0].split(",")]
        skip = 0
    except ValueError:
        skip = 1  # A header line.
    if not lines[skip].strip():
        raise ValueError(f"{path}: has no examples")
    try:
        table = np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2, dtype=np.float64)
    except ValueError as err:
        raise ValueError(f"{path}: not a numeric CSV table ({err})") from err
    if table.shape[1] < 2:
        raise ValueError(f"{path}: needs at least two columns (features, then the label)")
    return table[:, :-1], table[:, -1]


def read_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits: 1797 images of 8x8 = 64 pixels in 0..16, 10 classes."""
    from sklearn.datasets import load_digits  # Lazy: keeps `import azjax.tasks` light.

    images, labels = load_digits(return_X_y=True)
    return np.asarray(images, np.float64), np.asarray(labels, np.int64)


def read_cifar10(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The 50000 CIFAR-10 training images, flattened in (row, column, channel) order like tfds."""
    _require_dir(data_dir, f"the CIFAR-10 python batches {', '.join(_CIFAR_BATCHES)}")
    images, labels = [], []
    for name in _CIFAR_BATCHES:
        path = os.path.join(data_dir, name)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}: missing; expected the CIFAR-10 python batch "
                f"'{name}' (from cifar-10-python.tar.gz)"
            )
        # pickle is used ONLY for the standard CIFAR-10 batch files the user points us to; that
        # is the format they are distributed in. Never use it for anything else.
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
        except Exception as err:  # Truncated or foreign files raise many types.
            raise DatasetError(f"{path}: not a readable CIFAR-10 batch ({_one_line(err)})") from err
        if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
            raise DatasetError(f"{path}: not a CIFAR-10 batch (no b'data' / b'labels' entries)")
        try:
            data = np.asarray(batch[b"data"], np.uint8)
            labels.append(np.asarray(batch[b"labels"], np.int64).reshape(-1))
        except (TypeError, ValueError) as err:
            raise DatasetError(f"{path}: b'data' / b'labels' are not arrays ({err})") from err
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels[-1]):
            raise DatasetError(
                f"{path}: b'data' has shape {data.shape} and b'labels' {labels[-1].shape}, "
                "expected [n, 3072] and [n]"
            )
        # Batches store channel planes (C, H, W); tfds, which the original used, gives (H, W, C).
        images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).reshape(-1, 3072))
    return np.concatenate(images).astype(np.float64), np.concatenate(labels)


def read_mnist(data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The 60000 MNIST training images (784 pixels in 0..255) from the idx files."""
    _require_dir(
        data_dir, "the MNIST files train-images-idx3-ubyte[.gz] and train-labels-idx1-ubyte[.gz]"
    )
    images = _read_idx(data_dir, *_MNIST_FILES["images"])
    labels = _read_idx(data_dir, *_MNIST_FILES["labels"])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetError(
            f"{data_dir}: MNIST images {images.shape} and labels {labels.shape} do not match"
        )
    return images.reshape(len(images), -1).astype(np.float64), labels.astype(np.int64)


def _require_dir(data_dir: str, expected: str) -> None:
    if not os.path.isdir(data_dir):
        raise FileNotFoundError(f"{data_dir}: no such directory; expected a folder with {expected}")


def _read_idx(data_dir: str, name: str, magic: int) -> np.ndarray:
    """One uint8 idx file (plain or .gz): big-endian magic, dims, then the data."""
    for path in (os.path.join(data_dir, name), os.path.join(data_dir, name + ".gz")):
        if os.path.isfile(path):
            break
    else:
        raise FileNotFoundError(
            f"{os.path.join(data_dir, name)}[.gz]: missing; expected the "
            f"MNIST idx file '{name}' (plain or gzipped)"
        )
    try:
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:  # A truncated or corrupt .gz.
        raise DatasetError(f"{path}: not a readable gzip file ({_one_line(err)})") from err
    ndim = magic & 0xFF
    header = np.frombuffer(raw[: 4 * (1 + ndim)], ">u4") if len(raw) >= 4 * (1 + ndim) else ()
    if len(header) != 1 + ndim or int(header[0]) != magic:
        raise DatasetError(f"{path}: not an idx file with magic number {magic}")
    shape = tuple(int(n) for n in header[1:])
    data = np.frombuffer(raw, np.uint8, offset=4 * (1 + ndim))
    if data.size != int(np.prod(shape)):
        raise DatasetError(f"{path}: header says shape {shape}, found {data.size} values")
    return data.reshape(shape)


# ----------------------------------------------------------------------------------------------
# Writer.


def check_prepare_options(
    *,
    dataset_name: str,
    class_ids: Sequence[int],
    min_data_seed: int,
    max_data_seed: int,
    num_train: int,
    num_valid: int,
    num_test: int,
    projected_dim: int,
) -> tuple[int, ...]:
    """Validates `prepare_binary_datasets`' options; returns the sorted, distinct class ids."""
    if dataset_name not in DATASET_NAMES:
        raise ValueError(f"dataset_name must be one of {DATASET_NAMES}, got {dataset_name!r}")
    ids = sorted({int(c) for c in class_ids})
    if len(ids) < 2 or any(not 0 <= c < NUM_CLASSES for c in ids):
        raise ValueError(
            f"class_ids must hold at least 2 distinct ids in 0..{NUM_CLASSES - 1}, "
            f"got {list(class_ids)}"
        )
    if not 0 <= min_data_seed < max_data_seed:
        raise ValueError(
            f"need 0 <= min_data_seed < max_data_seed, got {min_data_seed} and {max_data_seed}"
        )
    for name, value in (("num_train", num_train), ("num_valid", num_valid), ("num_test", num_test)):
        if value < _MIN_SPLIT:
            raise ValueError(f"{name} must be >= {_MIN_SPLIT} (a stratified split), got {value}")
    if projected_dim < 1:
        raise ValueError(f"projected_dim must be >= 1, got {projected_dim}")
    return tuple(ids)


def prepare_binary_datasets(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    out_dir: str,
    dataset_name: str,
    class_ids: Sequence[int],
    min_data_seed: int,
    max_data_seed: int,
    num_train: int,
    num_valid: int,
    num_test: int,
    projected_dim: int,
) -> list[PreparedFile]:
    """Writes one projected binary dataset per class pair i < j and seed in [min, max).

    Args:
      images: float [n, d] raw pixels. labels: int [n] class ids.
      out_dir: folder for the `.npz` files (created if needed).
      dataset_name: used in the file names ("digits", "mnist" or "cifar10").
      class_ids: the classes to pair up; the smaller id of a pair is the positive class (label 1).
      min_data_seed, max_data_seed: one file per seed in [min, max); the seed drives the split
        and the projection.
      num_train, num_valid, num_test: split sizes. (num_train+num_valid+num_test)//2 images are
        taken per class; a class with fewer is used whole and the sizes shrink proportionally.
      projected_dim: F, the projected feature size.

    Returns:
      One `PreparedFile` per written file, pairs outer, seeds inner.
    """
    ids = check_prepare_options(
        dataset_name=dataset_name,
        class_ids=class_ids,
        min_data_seed=min_data_seed,
        max_data_seed=max_data_seed,
        num_train=num_train,
        num_valid=num_valid,
        num_test=num_test,
        projected_dim=projected_dim,
    )
    images = np.asarray(images, np.float64)
    labels = np.asarray(labels)
    if images.ndim != 2 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images must be [n, d] and labels [n], got {images.shape} and {labels.shape}"
        )
    os.makedirs(out_dir, exist_ok=True)
    requested = (num_train, num_valid, num_test)
    per_class = sum(requested) // 2
    written = []
    for a, pos in enumerate(ids):
        for neg in ids[a + 1 :]:
            x, y = _pair_examples(images, labels, pos, neg, per_class)
            sizes, note = _split_sizes(len(y), requested, dataset_name, pos, neg)
            for seed in range(min_data_seed, max_data_seed):
                splits = _project(x, y, sizes, seed, projected_dim)
                path = os.path.join(
                    out_dir, binary_file_name(dataset_name, pos, neg, projected_dim, seed)
                )
                meta = dict(
                    dataset_name=dataset_name,
                    positive_class=pos,
                    negative_class=neg,
                    seed=seed,
                    projected_dim=projected_dim,
                    input_dim=images.shape[1],
                    requested_sizes=np.asarray(requested),
                    shrunk=bool(note),
                    note=note,
                )
                _write_npz_atomic(path, {**splits, **meta})
                written.append(PreparedFile(path, pos, neg, seed, *sizes, bool(note)))
    return written


def _pair_examples(images, labels, pos, neg, per_class):
    """The first `per_class` images of each class, relabelled pos -> 1, neg -> 0."""
    xs, ys = [], []
    for class_id, label in ((pos, 1.0), (neg, 0.0)):
        rows = np.flatnonzero(labels == class_id)[:per_class]
        if len(rows) < _MIN_SPLIT:
            raise ValueError(f"class {class_id} has {len(rows)} images; need at least {_MIN_SPLIT}")
        xs.append(images[rows])
        ys.append(np.full(len(rows), label))
    return np.concatenate(xs), np.concatenate(ys)


def _split_sizes(available, requested, dataset_name, pos, neg):
    """(train, valid, test) for `available` examples, and a note when they had to shrink."""
    if available >= sum(requested):
        return requested, ""
    scale = available / sum(requested)
    valid, test = (max(_MIN_SPLIT, int(n * scale)) for n in requested[1:])
    train = available - valid - test
    if train < _MIN_SPLIT:
        raise ValueError(
            f"{dataset_name} pair ({pos}, {neg}) has only {available} images, too "
            f"few for train/valid/test = {requested}"
        )
    note = (
        f"classes {pos} and {neg} have {available} images in all, fewer than the requested "
        f"{sum(requested)}; split sizes shrunk from {requested} to {(train, valid, test)}"
    )
    _log.warning("%s: %s", dataset_name, note)
    return (train, valid, test), note


def _project(x, y, sizes, seed, projected_dim):
    """Stratified split, Gaussian projection and standardization, as the original (§5.3)."""
    num_train, num_valid, num_test = sizes
    x_tv, x_test, y_tv, y_test = split_examples(x, y, num_train + num_valid, num_test, seed)
    x_train, x_valid, y_train, y_valid = split_examples(x_tv, y_tv, num_train, num_valid, seed)
    projection = random_projection(seed, x.shape[1], projected_dim)
    scaler = fit_scaler(x_train, projection)
    out = {}
    for split, xs, ys in (
        ("train", x_train, y_train),
        ("valid", x_valid, y_valid),
        ("test", x_test, y_test),
    ):
        out[f"x_{split}"] = transform(xs, projection, scaler)
        out[f"y_{split}"] = ys.astype(np.float32)
    return out


def split_examples(x, y, num_first: int, num_second: int, seed: int, *, stratify: bool = True):
    """A random split of (x, y) into `num_first` and `num_second` examples (scikit-learn's
    `train_test_split`, stratified by y unless `stratify` is False): x_a, x_b, y_a, y_b."""
    from sklearn.model_selection import train_test_split  # Lazy, as in read_digits.

    return train_test_split(
        x,
        y,
        train_size=num_first,
        test_size=num_second,
        random_state=seed,
        stratify=y if stratify else None,
    )


def random_projection(seed: int, input_dim: int, projected_dim: int) -> np.ndarray:
    """The Gaussian projection matrix [input_dim, projected_dim] of a seed: N(0, 1) entries from
    NumPy's `RandomState(seed)`, as the original's generate_datasets.py."""
    return np.random.RandomState(seed).randn(input_dim, projected_dim)


def fit_scaler(x_train: np.ndarray, projection: np.ndarray | None = None):
    """A scikit-learn `StandardScaler` fitted on `x_train @ projection` (None: on x_train)."""
    from sklearn.preprocessing import StandardScaler

    return StandardScaler().fit(x_train if projection is None else x_train @ projection)


def transform(x: np.ndarray, projection: np.ndarray | None, scaler) -> np.ndarray:
    """float32 `scaler.transform(x @ projection)` (None: no projection): the features a task
    built with `random_projection` and `fit_scaler` gives an algorithm."""
    return scaler.transform(x if projection is None else x @ projection).astype(np.float32)


def _write_npz_atomic(path: str, arrays: dict) -> None:
    """np.savez to a temporary file in the same folder, then os.replace onto `path`."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


# ----------------------------------------------------------------------------------------------
# Loader.


def load_binary_dataset(
    path: str, *, feature_size: int, num_train: int, num_valid: int
) -> BinaryDataset:
    """The first `num_train` / `num_valid` examples of a prepared file, checked.

    Raises:
      DatasetError (a ValueError) naming the file and the problem: missing file, not an .npz
      (a pickle, a truncated or foreign file), a missing or unreadable array, arrays that are
      not numbers (strings, objects), a feature size other than `feature_size`, too few
      examples, labels other than 0 / 1, or non-finite values.
    """
    if not os.path.isfile(path):
        raise DatasetError(f"{path}: no such dataset file; {_CREATE_HINT}")
    try:
        with open(path, "rb") as f:  # Ours to close: np.load leaks the file of a truncated zip.
            arrays = _read_arrays(path, f)
    except OSError as err:  # No permission, a read error.
        raise DatasetError(f"{path}: cannot read the dataset file ({err.strerror})") from err
    out = []
    for split, wanted in (("train", num_train), ("valid", num_valid)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
            raise DatasetError(
                f"{path}: x_{split} {x.shape} and y_{split} {y.shape} must be [n, F] and [n]"
            )
        if x.shape[1] != feature_size:
            raise DatasetError(
                f"{path}: feature size is {x.shape[1]}, the task asks for {feature_size}"
            )
        if len(x) < wanted:
            raise DatasetError(f"{path}: has {len(x)} {split} examples, the task asks for {wanted}")
        with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf: caught.
            x, y = x[:wanted].astype(np.float32), y[:wanted].astype(np.float32)
        if not np.all((y == 0) | (y == 1)):
            raise DatasetError(f"{path}: y_{split} has labels other than 0 and 1")
        if not np.all(np.isfinite(x)):
            raise DatasetError(f"{path}: x_{split} has non-finite values (NaN or inf)")
        out += [x, y]
    return BinaryDataset(*out)


def _read_arrays(path: str, f) -> dict[str, np.ndarray]:
    """The arrays `load_binary_dataset` reads, from the open file `f` of `path`, numbers only."""
    head = f.read(6)
    if not head.startswith(_NPZ_MAGICS):
        what = "a pickle, never loaded" if head[:1] == b"\x80" else f"it starts with {head!r}"
        raise DatasetError(f"{path}: not an .npz dataset file ({what}); {_CREATE_HINT}")
    f.seek(0)
    try:
        data = np.load(f, allow_pickle=False)
    except Exception as err:  # np.load raises many types on a corrupt or foreign file.
        raise DatasetError(f"{path}: not a readable .npz dataset file ({_one_line(err)})") from err
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path}: holds a single array, not an .npz dataset file")
    with data:
        missing = [name for name in _LOADED_ARRAYS if name not in data.files]
        if missing:
            raise DatasetError(f"{path}: missing arrays {missing}; {_CREATE_HINT}")
        arrays = {}
        for name in _LOADED_ARRAYS:
            try:  # A truncated or corrupt member raises zipfile, zlib or numpy errors.
                arrays[name] = np.asarray(data[name])
            except Exception as err:
                raise DatasetError(f"{path}: unreadable array {name} ({_one_line(err)})") from err
            if arrays[name].dtype.kind not in "biuf":
                raise DatasetError(
                    f"{path}: {name} holds {arrays[name].dtype} values, not numbers; {_CREATE_HINT}"
                )
    return arrays


def _one_line(err: BaseException) -> str:
    """An exception's message on one line (some span several)."""
    return " ".join(str(err).split()) or type(err).__name__
