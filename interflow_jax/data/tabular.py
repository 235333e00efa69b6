"""The five tabular density-estimation benchmarks of the MAF release (Papamakarios et al. 2017).

`load_tabular(name, data_dir=None) -> TabularData(train, validation, test, name)` reads the
files of the MAF data release (https://zenodo.org/record/1161203, never fetched from here)
and applies the preprocessing, splits and normalisation of the MAF code
(github.com/gpapamak/maf, `datasets/{power,gas,hepmass,miniboone,bsds300}.py`, reused
unchanged by FFJORD and most later papers), so test log-likelihoods are comparable with
PAPER.md section 8, Table 2. The procedures below were transcribed from that code;
where they differ from the folklore version of the procedure, the difference is noted.

Files, relative to the data directory (the `data_dir` argument, else the environment
variable INTERFLOW_DATA_DIR), and the preprocessing:

* ``power``, d = 6, `power/data.npy` (N x 8, float): `RandomState(42).shuffle` of the rows;
  `np.delete` column 3 then column 1 (global intensity and global reactive power, per the
  commented-out noise terms of the MAF code; they are not date/time columns); then, with
  the same generator, in this order: voltage_noise = 0.01 rand(N, 1), gap_noise =
  0.001 rand(N, 1), sm_noise = rand(N, 3), time_noise = 0, and data += hstack(gap_noise,
  voltage_noise, sm_noise, time_noise); split (below); normalise all three splits with
  the mean and std (numpy, ddof=0) of train + validation.
* ``gas``, d = 8 on the release, `gas/ethylene_CO.pickle` (a pickled pandas DataFrame):
  drop the columns 'Meth', 'Eth', 'Time' (by name); then, while some row of
  (DataFrame.corr() > 0.98) has more than one True (the diagonal is one), drop the first
  such column, *by name* (as pandas `drop` does: every column with that name); normalise
  with the mean and std of the whole table (pandas, ddof=1); then split (below).
* ``hepmass``, d = 21 on the release, `hepmass/1000_train.csv`, `hepmass/1000_test.csv`
  (`pandas.read_csv(..., index_col=False)`): keep the rows whose first column (the label)
  is 1 and drop that column; from the test table also drop its *last column* (the MAF
  code: "Because the data set is messed up!"); normalise train and test with the train
  mean and std (pandas, ddof=1); drop every feature whose smallest train value occurs more
  than 5 times. (MAF computes ``sorted(Counter(feature).items())[0]``'s count, i.e. the
  count of the minimum, not the largest count of any value as often paraphrased; for the
  discrete features this removes, both agree.) Validation = the last int(0.1 N) rows of
  train; the test set is the file's. MAF aligns train and test by column name (pandas
  arithmetic); here the test columns left after the drops must equal the train columns,
  name for name, or a ValueError is raised rather than silently reordering columns. Not
  verified against the real files: the UCI readme says the '1000' files carry no mass
  feature, so the test file's extra last column is presumably a stray mass column. The
  MAF code drops no test *row*; neither does this loader.
* ``miniboone``, d = 43, `miniboone/data.npy` (already cleaned by MAF): split (below);
  normalise with the mean and std (numpy, ddof=0) of train + validation.
* ``bsds300``, d = 63, `BSDS300/BSDS300.hdf5` with datasets 'train', 'validation', 'test':
  used as stored. The release already holds 63 columns per 8 x 8 patch (the bottom-right
  pixel, minus the sum of the others after the per-patch mean was removed, was dropped
  when the file was made; MAF sets image_size = sqrt(d + 1)); nothing is dropped here,
  and a file with another width is rejected.

"Split": n_test = int(0.1 N); test = the last n_test rows; of the rest, validation = the
last int(0.1 N_rest) rows, train = the others (no shuffling except POWER's).

Sizes reported for the release (MAF, FFJORD papers): POWER 1,659,917 / 184,435 / 204,928;
GAS 852,174 / 94,685 / 105,206; HEPMASS 315,123 / 35,013 / 174,987; MINIBOONE 29,556 /
3,284 / 3,648; BSDS300 1,000,000 / 50,000 / 250,000 (train / validation / test). They are
not checked here.

The arithmetic is done in float64 and the splits are returned as float32 numpy arrays
(as MAF's `Data` class does). GAS and HEPMASS need pandas and BSDS300 needs h5py, which
are not dependencies of this package: they are imported only by those loaders, with an
ImportError that names the package to install. The GAS file is a pickle: loading it runs
pickle code, so only load a file from a source you trust.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

RELEASE_URL = "https://zenodo.org/record/1161203"
DATA_DIR_ENV = "INTERFLOW_DATA_DIR"
DATASETS: tuple[str, ...] = ("power", "gas", "hepmass", "miniboone", "bsds300")
DIMS = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
FILES = {
    "power": ("power/data.npy",),
    "gas": ("gas/ethylene_CO.pickle",),
    "hepmass": ("hepmass/1000_train.csv", "hepmass/1000_test.csv"),
    "miniboone": ("miniboone/data.npy",),
    "bsds300": ("BSDS300/BSDS300.hdf5",),
}
POWER_RAW_COLUMNS = 8
GAS_DROPPED_COLUMNS = ("Meth", "Eth", "Time")
GAS_CORRELATION_THRESHOLD = 0.98
HEPMASS_MAX_MIN_COUNT = 5


class TabularData(NamedTuple):
    """Train, validation and test splits, each a float32 numpy array (n_split, d)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    name: str

    @property
    def dim(self) -> int:
        """The data dimension d."""
        return int(self.train.shape[1])


# --------------------------------------------------------------------------- helpers


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`data_dir` if given, else $INTERFLOW_DATA_DIR, else ValueError."""
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        raise ValueError(
            f"no data directory: pass data_dir= or set {DATA_DIR_ENV} to the folder that "
            f"holds the MAF release (power/, gas/, hepmass/, miniboone/, BSDS300/; "
            f"{RELEASE_URL})."
        )
    return Path(data_dir)


def _where_to_get(name: str, root: Path) -> str:
    layout = ", ".join(str(root / f) for f in FILES[name])
    return (
        f"The {name} files come from the MAF data release (Papamakarios et al. 2017), "
        f"{RELEASE_URL}: unpack it so that {layout} exist(s)."
    )


def _require_file(name: str, root: Path, relative: str) -> Path:
    path = root / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{name}: expected file {path} not found. " + _where_to_get(name, root)
        )
    return path


def _malformed(name: str, path: Path, what: str) -> ValueError:
    return ValueError(
        f"{name}: malformed file {path}: {what}. " + _where_to_get(name, path.parents[1])
    )


def _import(module: str, name: str):
    try:
        return __import__(module)
    except ImportError as err:
        raise ImportError(
            f"loading {name} needs {module}, which is not a dependency of interflow_jax: "
            f"`pip install {module}`."
        ) from err


def _split(data: np.ndarray, name: str, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MAF split: test = last int(0.1 N) rows; validation = last int(0.1 N_rest) of the rest."""
    n_test = int(0.1 * data.shape[0])
    n_validation = int(0.1 * (data.shape[0] - n_test))
    if n_test < 1 or n_validation < 1:
        raise _malformed(name, path, f"{data.shape[0]} rows are too few to split 80/10/10")
    test, rest = data[-n_test:], data[:-n_test]
    return rest[:-n_validation], rest[-n_validation:], test


def _normalise_by_train_and_validation(train, validation, test):
    """Standardise all splits by the mean and std (ddof=0) of train + validation (MAF)."""
    both = np.vstack((train, validation))
    mu, s = both.mean(axis=0), both.std(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):  # std 0 is reported later
        return (train - mu) / s, (validation - mu) / s, (test - mu) / s


def _load_npy(name: str, path: Path, columns: int) -> np.ndarray:
    try:
        data = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _malformed(name, path, f"not a numpy .npy array ({err})") from err
    if data.ndim != 2 or data.shape[1] != columns or not np.issubdtype(data.dtype, np.number):
        raise _malformed(
            name, path, f"expected a numeric (N, {columns}) array, got {data.dtype} {data.shape}"
        )
    return np.asarray(data, np.float64)


# --------------------------------------------------------------------------- loaders


def _load_power(root: Path):
    path = _require_file("power", root, FILES["power"][0])
    data = _load_npy("power", path, POWER_RAW_COLUMNS)
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    n = data.shape[0]
    data = np.delete(data, 3, axis=1)
    data = np.delete(data, 1, axis=1)
    voltage_noise = 0.01 * rng.rand(n, 1)
    gap_noise = 0.001 * rng.rand(n, 1)
    sm_noise = rng.rand(n, 3)
    time_noise = np.zeros((n, 1))
    data = data + np.hstack((gap_noise, voltage_noise, sm_noise, time_noise))
    return _normalise_by_train_and_validation(*_split(data, "power", path)), path


def _gas_correlation_counts(frame) -> np.ndarray:
    """For each column, how many columns (itself included) it correlates with above 0.98."""
    return (frame.corr() > GAS_CORRELATION_THRESHOLD).to_numpy().sum(axis=1)


def _load_gas(root: Path):
    path = _require_file("gas", root, FILES["gas"][0])
    pd = _import("pandas", "gas")
    try:
        frame = pd.read_pickle(path)
    except Exception as err:  # unpickling can fail in many ways; all mean a bad file
        raise _malformed("gas", path, f"not a readable pandas pickle ({err!r})") from err
    if not isinstance(frame, pd.DataFrame):
        raise _malformed("gas", path, f"expected a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in GAS_DROPPED_COLUMNS if c not in frame.columns]
    if missing:
        raise _malformed("gas", path, f"columns {missing} missing (has {list(frame.columns)})")
    frame = frame.drop(columns=list(GAS_DROPPED_COLUMNS))
    try:
        frame = frame.astype(np.float64)
    except (ValueError, TypeError) as err:
        raise _malformed("gas", path, f"non-numeric sensor columns ({err})") from err
    counts = _gas_correlation_counts(frame)
    while np.any(counts > 1):
        frame = frame.drop(columns=frame.columns[np.where(counts > 1)[0][0]])
        counts = _gas_correlation_counts(frame)
    data = frame.to_numpy(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        data = (data - data.mean(axis=0)) / data.std(axis=0, ddof=1)
    return _split(data, "gas", path), path


def _read_hepmass_csv(pd, path: Path):
    try:
        frame = pd.read_csv(path, index_col=False)
    except (ValueError, OSError) as err:  # pandas' parser errors are ValueErrors
        raise _malformed("hepmass", path, f"not a readable CSV ({err})") from err
    if frame.shape[1] < 2 or frame.shape[0] == 0:
        raise _malformed(
            "hepmass", path, f"expected a label column and features, got {frame.shape}"
        )
    try:
        positive = frame[frame[frame.columns[0]] == 1]
        return positive.drop(columns=positive.columns[0]).astype(np.float64)
    except (ValueError, TypeError) as err:
        raise _malformed("hepmass", path, f"non-numeric values ({err})") from err


def _load_hepmass(root: Path):
    train_path = _require_file("hepmass", root, FILES["hepmass"][0])
    test_path = _require_file("hepmass", root, FILES["hepmass"][1])
    pd = _import("pandas", "hepmass")
    train = _read_hepmass_csv(pd, train_path)
    test = _read_hepmass_csv(pd, test_path)
    test = test.drop(columns=test.columns[-1])  # MAF: "Because the data set is messed up!"
    if list(test.columns) != list(train.columns):
        raise _malformed(
            "hepmass",
            test_path,
            "after dropping the label column and the last column (MAF), the test columns "
            f"{list(test.columns)} differ from the train columns {list(train.columns)} "
            f"of {train_path}",
        )
    train, test = train.to_numpy(np.float64), test.to_numpy(np.float64)
    mu, s = train.mean(axis=0), train.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        train, test = (train - mu) / s, (test - mu) / s
    min_counts = np.sum(train == train.min(axis=0), axis=0)
    keep = min_counts <= HEPMASS_MAX_MIN_COUNT
    train, test = train[:, keep], test[:, keep]
    n_validation = int(train.shape[0] * 0.1)
    if n_validation < 1:
        raise _malformed("hepmass", train_path, f"{train.shape[0]} positive rows are too few")
    return (train[:-n_validation], train[-n_validation:], test), test_path


def _load_miniboone(root: Path):
    path = _require_file("miniboone", root, FILES["miniboone"][0])
    data = _load_npy("miniboone", path, DIMS["miniboone"])
    return _normalise_by_train_and_validation(*_split(data, "miniboone", path)), path


def _load_bsds300(root: Path):
    path = _require_file("bsds300", root, FILES["bsds300"][0])
    h5py = _import("h5py", "bsds300")
    splits = []
    try:
        with h5py.File(path, "r") as f:
            for key in ("train", "validation", "test"):
                if key not in f:
                    raise _malformed("bsds300", path, f"no dataset {key!r} (has {sorted(f)})")
                splits.append(np.asarray(f[key][()]))
    except OSError as err:
        raise _malformed("bsds300", path, f"not a readable HDF5 file ({err})") from err
    for key, x in zip(("train", "validation", "test"), splits, strict=True):
        if x.ndim != 2 or x.shape[1] != DIMS["bsds300"] or not np.issubdtype(x.dtype, np.number):
            raise _malformed(
                "bsds300", path, f"dataset {key!r} is {x.dtype} {x.shape}, expected (N, 63)"
            )
    return tuple(splits), path


_LOADERS: dict[str, Callable] = {
    "power": _load_power,
    "gas": _load_gas,
    "hepmass": _load_hepmass,
    "miniboone": _load_miniboone,
    "bsds300": _load_bsds300,
}


def load_tabular(name: str, data_dir: str | os.PathLike | None = None) -> TabularData:
    """Load MAF benchmark `name` (one of DATASETS, any case) with its standard preprocessing.

    Returns TabularData(train, validation, test, name) of float32 arrays (n_split, d).
    The data directory is `data_dir`, else $INTERFLOW_DATA_DIR, else ValueError. A missing
    file raises FileNotFoundError and a malformed one ValueError, both naming the path.
    """
    key = name.lower() if isinstance(name, str) else name
    if key not in _LOADERS:
        raise ValueError(f"unknown tabular data set {name!r}; valid names: {', '.join(DATASETS)}.")
    root = resolve_data_dir(data_dir)
    splits, path = _LOADERS[key](root)
    splits = [np.asarray(x, np.float32) for x in splits]
    for split_name, x in zip(("train", "validation", "test"), splits, strict=True):
        if not np.all(np.isfinite(x)):
            raise _malformed(
                key, path, f"non-finite values in the {split_name} split (constant column?)"
            )
    return TabularData(*splits, name=key)
