"""Tests for azjax.datasets and scripts/prepare_datasets.py, on real digits and tiny fake files."""

import gzip
import logging
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from azjax import datasets

SCRIPT = os.path.join(os.path.dirname(__file__), "..", "scripts", "prepare_datasets.py")
SIZES = {"num_train": 100, "num_valid": 20, "num_test": 20}


@pytest.fixture(scope="module")
def digits():
    return datasets.read_digits()


@pytest.fixture(scope="module")
def prepared(digits, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("binary_digits"))
    written = datasets.prepare_binary_datasets(
        *digits,
        out_dir=out,
        dataset_name="digits",
        class_ids=[1, 0],
        min_data_seed=3,
        max_data_seed=5,
        projected_dim=4,
        **SIZES,
    )
    return out, written


def _load(path, f=4, n_train=100, n_valid=20):
    return datasets.load_binary_dataset(path, feature_size=f, num_train=n_train, num_valid=n_valid)


def test_read_digits(digits):
    images, labels = digits
    assert images.shape == (1797, 64) and images.dtype == np.float64
    assert sorted(np.unique(labels)) == list(range(10))
    assert images.max() == 16


def test_prepare_writes_one_file_per_pair_and_seed(prepared):
    out, written = prepared
    names = sorted(os.listdir(out))
    assert names == [f"binary_digits-pos_0-neg_1-dim_4-seed_{s}.npz" for s in (3, 4)]
    assert [(w.positive_class, w.negative_class, w.seed) for w in written] == [(0, 1, 3), (0, 1, 4)]
    assert all(
        (w.num_train, w.num_valid, w.num_test, w.shrunk) == (100, 20, 20, False) for w in written
    )
    with np.load(written[0].path, allow_pickle=False) as data:
        for split, n in (("train", 100), ("valid", 20), ("test", 20)):
            x, y = data[f"x_{split}"], data[f"y_{split}"]
            assert x.shape == (n, 4) and x.dtype == np.float32 and y.dtype == np.float32
            assert np.sum(y == 1) == n // 2 and np.sum(y == 0) == n // 2  # Stratified.
        np.testing.assert_allclose(data["x_train"].mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(data["x_train"].std(0), 1, atol=1e-4)
        assert str(data["dataset_name"]) == "digits" and int(data["seed"]) == 3
        assert not bool(data["shrunk"]) and int(data["input_dim"]) == 64
    a, b = (_load(w.path) for w in written)
    assert not np.array_equal(a.x_train, b.x_train)  # Seeds differ.


def test_prepare_matches_the_original_pipeline(digits, prepared):
    """Recomputes seed 3 as generate_datasets.py does: split, project, standardize (§5.3)."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    images, labels = digits
    x = np.concatenate([images[labels == 0][:70], images[labels == 1][:70]])
    y = np.concatenate([np.ones(70), np.zeros(70)])  # The smaller id is the positive class.
    x_tv, _, y_tv, _ = train_test_split(
        x, y, train_size=120, test_size=20, random_state=3, stratify=y
    )
    x_tr, _, y_tr, _ = train_test_split(
        x_tv, y_tv, train_size=100, test_size=20, random_state=3, stratify=y_tv
    )
    np.random.seed(3)
    proj = x_tr @ np.random.randn(64, 4)
    got = _load(prepared[1][0].path)
    np.testing.assert_allclose(
        got.x_train, StandardScaler().fit_transform(proj), rtol=1e-5, atol=1e-5
    )
    np.testing.assert_array_equal(got.y_train, y_tr)


def test_prepare_shrinks_small_classes(digits, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="azjax.datasets"):
        (written,) = datasets.prepare_binary_datasets(
            *digits,
            out_dir=str(tmp_path),
            dataset_name="digits",
            class_ids=[3, 8],
            min_data_seed=0,
            max_data_seed=1,
            num_train=8000,
            num_valid=1000,
            num_test=1000,
            projected_dim=16,
        )
    available = np.sum(digits[1] == 3) + np.sum(digits[1] == 8)
    assert written.shrunk and written.num_valid == written.num_test == int(1000 * available / 1e4)
    assert written.num_train + written.num_valid + written.num_test == available
    assert "shrunk" in caplog.text and "classes 3 and 8" in caplog.text
    with np.load(written.path, allow_pickle=False) as data:
        assert bool(data["shrunk"]) and "shrunk" in str(data["note"])
        np.testing.assert_array_equal(data["requested_sizes"], [8000, 1000, 1000])
        assert data["x_train"].shape == (written.num_train, 16)
    assert os.listdir(tmp_path) == [os.path.basename(written.path)]  # No temp files left.


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dataset_name": "svhn"}, "dataset_name"),
        ({"class_ids": [3]}, "class_ids"),
        ({"class_ids": [3, 10]}, "class_ids"),
        ({"min_data_seed": 2, "max_data_seed": 2}, "min_data_seed"),
        ({"num_test": 1}, "num_test"),
        ({"projected_dim": 0}, "projected_dim"),
    ],
)
def test_prepare_option_errors(kwargs, match):
    options = {
        "dataset_name": "digits",
        "class_ids": [0, 1],
        "min_data_seed": 0,
        "max_data_seed": 1,
        "projected_dim": 4,
        **SIZES,
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        datasets.check_prepare_options(**options)


def _rewrite(tmp_path, source, **changes):
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path = str(tmp_path / f"bad_{len(os.listdir(tmp_path))}.npz")
    np.savez(path, **arrays)
    return path


def _damaged_files(tmp_path, good):
    """(path, load kwargs, message regex) of every kind of bad dataset file."""
    nan, inf = np.full((20, 4), np.nan, np.float32), np.full((100, 4), np.inf, np.float32)
    text = tmp_path / "text.npz"
    text.write_text("not a zip")
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    objects = str(tmp_path / "objects.npz")
    np.savez(objects, **{k: np.zeros(1, object) for k in datasets.SPLIT_ARRAYS})
    pickled = tmp_path / "pickled.npz"
    pickled.write_bytes(pickle.dumps({"x_train": np.zeros((100, 4))}))
    raw = pathlib.Path(good).read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(raw[: len(raw) // 2])
    corrupt = tmp_path / "corrupt.npz"  # Intact zip directory, one member's bytes damaged.
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("x_train.npy")
    at = info.header_offset + 30 + len(info.filename) + info.file_size // 2
    corrupt.write_bytes(raw[:at] + bytes(b ^ 0xFF for b in raw[at : at + 64]) + raw[at + 64 :])
    with np.load(good) as data:
        strings = data["x_train"].astype(str)  # Numbers as text: "0.123".
    return [
        (str(tmp_path / "nope.npz"), {}, r"no such dataset file.*prepare_datasets\.py"),
        (_rewrite(tmp_path, good, x_valid=None), {}, r"missing arrays \['x_valid'\]"),
        (good, {"f": 16}, "feature size is 4, the task asks for 16"),
        (good, {"n_train": 101}, "has 100 train examples, the task asks for 101"),
        (good, {"n_valid": 21}, "has 20 valid examples, the task asks for 21"),
        (
            _rewrite(tmp_path, good, y_train=np.full(100, 2.0, np.float32)),
            {},
            "y_train has labels other than 0 and 1",
        ),
        (_rewrite(tmp_path, good, x_valid=nan), {}, "x_valid has non-finite values"),
        (_rewrite(tmp_path, good, x_train=inf), {}, "x_train has non-finite values"),
        (_rewrite(tmp_path, good, y_valid=np.zeros(19, np.float32)), {}, "must be"),
        (_rewrite(tmp_path, good, x_train=np.zeros(100)), {}, r"x_train \(100,\) .* must be"),
        (str(text), {}, r"not an .npz dataset file \(it starts with b'not a '\)"),
        (str(single), {}, "single array"),
        (objects, {}, "unreadable array x_train"),
        (str(pickled), {}, r"not an .npz dataset file \(a pickle, never loaded\)"),
        (str(truncated), {}, "not a readable .npz dataset file.*zip"),
        (str(corrupt), {}, "unreadable array x_train"),
        (_rewrite(tmp_path, good, x_train=strings), {}, "x_train holds <U.* values, not numbers"),
        (_rewrite(tmp_path, good, y_valid=np.full(20, b"1")), {}, "y_valid holds |S1 values"),
    ]


def test_loader_rejects_malformed_files(prepared, tmp_path):
    """Every bad file is a one-line DatasetError (a ValueError) naming the file."""
    good = prepared[1][0].path
    got = _load(good, n_train=7, n_valid=3)
    assert [a.shape for a in got] == [(7, 4), (7,), (3, 4), (3,)]
    for path, kw, match in _damaged_files(tmp_path, good):
        with pytest.raises(datasets.DatasetError, match=match) as err:
            _load(path, **kw)
        message = str(err.value)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        assert isinstance(err.value, ValueError)


def test_read_cifar10_from_python_batches(tmp_path):
    for i in range(1, 6):
        data = np.zeros((2, 3072), np.uint8)
        data[:, :1024], data[:, 1024:2048], data[:, 2048:] = 10 * i, 20 * i, 30 * i  # R, G, B
        with open(tmp_path / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": [i, i + 1]}, f)
    images, labels = datasets.read_images("cifar10", str(tmp_path))
    assert images.shape == (10, 3072) and images.dtype == np.float64
    np.testing.assert_array_equal(labels, [1, 2, 2, 3, 3, 4, 4, 5, 5, 6])
    np.testing.assert_array_equal(images[0, :6], [10, 20, 30, 10, 20, 30])  # (H, W, C) order.
    os.remove(tmp_path / "data_batch_4")
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        datasets.read_cifar10(str(tmp_path))
    batch_2 = tmp_path / "data_batch_2"
    batch_2.write_bytes(batch_2.read_bytes()[:100])  # Truncated.
    with pytest.raises(datasets.DatasetError, match="data_batch_2: not a readable CIFAR-10 batch"):
        datasets.read_cifar10(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no such directory.*CIFAR-10"):
        datasets.read_cifar10(str(tmp_path / "missing"))


def _idx(magic, shape, values):
    header = np.asarray([magic, *shape], ">u4").tobytes()
    return header + np.asarray(values, np.uint8).tobytes()


def test_read_mnist_from_idx_files(tmp_path):
    pixels = np.arange(3 * 28 * 28) % 256
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(2051, (3, 28, 28), pixels))
    with gzip.open(tmp_path / "train-labels-idx1-ubyte.gz", "wb") as f:
        f.write(_idx(2049, (3,), [7, 0, 9]))
    images, labels = datasets.read_images("mnist", str(tmp_path))
    assert images.shape == (3, 784)
    np.testing.assert_array_equal(images.reshape(-1), pixels)
    np.testing.assert_array_equal(labels, [7, 0, 9])
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(2049, (3,), [1, 2, 3]))
    with pytest.raises(datasets.DatasetError, match="magic number 2051"):
        datasets.read_mnist(str(tmp_path))
    labels_gz = tmp_path / "train-labels-idx1-ubyte.gz"
    labels_gz.write_bytes(labels_gz.read_bytes()[:-12])  # Truncated.
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx(2051, (3, 28, 28), pixels))
    with pytest.raises(datasets.DatasetError, match=r"idx1-ubyte\.gz: not a readable gzip file"):
        datasets.read_mnist(str(tmp_path))
    os.remove(tmp_path / "train-images-idx3-ubyte")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        datasets.read_mnist(str(tmp_path))
    with pytest.raises(ValueError, match="needs data_dir"):
        datasets.read_images("mnist")


def _run_script(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_script_end_to_end(tmp_path):
    out = tmp_path / "out"
    result = _run_script(
        "--dataset=digits",
        f"--output_dir={out}",
        "--class_ids=2,7",
        "--max_data_seed=1",
        "--num_train_examples=50",
        "--num_valid_examples=10",
        "--num_test_examples=10",
        "--projected_dim=8",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 1 files" in result.stdout and "50/10/10" in result.stdout
    got = _load(
        str(out / "binary_digits-pos_2-neg_7-dim_8-seed_0.npz"), f=8, n_train=50, n_valid=10
    )
    assert got.x_train.shape == (50, 8)
    bad = _run_script("--dataset=digits", f"--output_dir={out}", "--class_ids=2")
    assert bad.returncode == 1 and bad.stdout == ""
    assert bad.stderr.strip().count("\n") == 0 and "class_ids" in bad.stderr


def test_read_array_file_csv_and_npz(tmp_path):
    x = np.arange(12.0).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    np.savetxt(tmp_path / "plain.csv", np.column_stack([x, y]), delimiter=",")
    (tmp_path / "header.csv").write_text("a,b,c,label\n" + (tmp_path / "plain.csv").read_text())
    np.savez(tmp_path / "arrays.npz", X=x, y=y)
    for name in ("plain.csv", "header.csv", "arrays.npz"):
        got_x, got_y = datasets.read_array_file(str(tmp_path / name))
        np.testing.assert_array_equal(got_x, x)
        np.testing.assert_array_equal(got_y, y)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.csv", None, "no such file"),
        ("data.txt", "1,2\n", "expected a .npz or .csv file"),
        ("empty.csv", "", "has no examples"),
        ("words.csv", "a,b\nc,d\n", "not a numeric CSV table"),
        ("one.csv", "1\n2\n", "at least two columns"),
        ("nan.csv", "1,nan\n2,1\n", "non-finite"),
        ("bad.npz", "not a zip", "not a readable .npz file"),
    ],
)
def test_read_array_file_errors(tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=message) as err:
        datasets.read_array_file(str(tmp_path / name))
    assert "\n" not in str(err.value) and name in str(err.value)


def test_read_array_file_npz_needs_x_and_y(tmp_path):
    np.savez(tmp_path / "a.npz", features=np.zeros((2, 2)), y=np.zeros(2))
    with pytest.raises(ValueError, match=r"needs arrays 'x' \(or 'X'\) and 'y'"):
        datasets.read_array_file(str(tmp_path / "a.npz"))
    np.savez(tmp_path / "b.npz", x=np.zeros((2, 2)), y=np.zeros(3))
    with pytest.raises(ValueError, match=r"must be \[n, d\] and \[n\]"):
        datasets.read_array_file(str(tmp_path / "b.npz"))


def test_your_own_file_becomes_projected_binary_tasks(tmp_path):
    """A CSV of examples -> prepare_datasets.py --dataset=file -> projected_binary tasks."""
    from azjax import tasks

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 12))
    y = np.arange(80) % 2
    np.savetxt(tmp_path / "mine.csv", np.column_stack([x, y]), delimiter=",", header="h")
    out = tmp_path / "out"
    result = _run_script(
        "--dataset=file",
        f"--data_file={tmp_path / 'mine.csv'}",
        f"--output_dir={out}",
        "--class_ids=0,1",
        "--max_data_seed=2",
        "--num_train_examples=40",
        "--num_valid_examples=20",
        "--num_test_examples=20",
        "--projected_dim=4",
    )
    assert result.returncode == 0, result.stderr
    assert "wrote 2 files" in result.stdout and "80 file examples of 12 features" in result.stdout
    spec = tasks.TaskSpec(
        kind="projected_binary",
        num_train_examples=40,
        num_valid_examples=20,
        feature_size=4,
        eval_type="accuracy",
        dataset_dir=str(out),
        dataset_name="file",
        positive_class=0,
        negative_class=1,
        max_supported_data_seed=2,
        num_tasks=2,
    )
    ts, _ = tasks.make_tasks(spec)
    assert ts.x_train.shape == (2, 40, 4)
    # Class 0 (the smaller id) is the positive class, as the original's files.
    assert np.asarray(ts.y_valid).sum() == 20
    missing = _run_script("--dataset=file", f"--output_dir={out}")
    assert missing.returncode == 1 and "--data_file is required" in missing.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,0.5\n3,4,1\n")
    with pytest.raises(ValueError, match="class ids must be integers in 0..9"):
        datasets.read_images("file", str(bad))
