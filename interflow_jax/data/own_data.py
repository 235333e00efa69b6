"""A user's own data matrix: read, validate, split and standardise it.

`load_table(path, label=None, key=None) -> Table` reads one file:

* ``.npy``: a 2-D numeric array, opened with ``mmap_mode="r"``: rows are read by index
  when they are needed, so a file larger than memory can be used; `label=J` names the
  (0-based) column J as the class column.
* ``.npz``: the array named by `key`, or the only array of the archive; `label=NAME`
  names a 1-D array of the archive (one class per row).
* ``.csv`` / ``.tsv``: a header row, then numeric columns (read into memory); `label`
  names the class column, whose integer or string values become the classes. Empty
  cells and 'nan' read as NaN and are rejected with the other non-finite values.

Classes are mapped to 0..K-1 in sorted order (numerically when every value is an
integer, else as strings); `Table.classes[k]` is the value of class k.

Rows are numbered from 0 (the header row of a CSV/TSV file is not counted). Every
check raises one ValueError (FileNotFoundError for a missing file) that names the
file and what is wrong: unknown extension, an array that is not 2-D, a non-numeric
column, NaN or infinite values (their count and the first row), a constant column (it
has no density), a missing label column. The whole file is scanned once, in chunks, for
the last three.

`split_rows(n, validation_fraction, test_fraction, seed)` splits row indices with
`numpy.random.default_rng(seed).permutation(n)`: the first round(test_fraction n) rows
of the permutation are the test split, the next round(validation_fraction n) the
validation split, the rest the training split (each returned sorted).

`fit_standardization(table, rows)` computes the training split's mean m and standard
deviation s (ddof = 0) per column in float64, in chunks (the merge of Chan et al. 1979),
never holding the split in memory. The model works on z = (x - m) / s, so

    log p_x(x) = log p_z(z) - sum_i log s_i,

and `Standardization.log_scale` = sum_i log s_i is the term added to an NLL in
standardised units to give it in the data's own units.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

SUFFIXES = (".npy", ".npz", ".csv", ".tsv")
SCAN_CHUNK_ROWS = 65_536
_MISSING = ("", "na", "nan", "null", "none")


class Table(NamedTuple):
    """A validated data matrix.

    values: (N, D) numeric array (a read-only memmap for .npy files); the model's columns
      are `value_columns` of it (all columns when None).
    labels: int32 (N,) in 0..K-1, or None.
    classes: classes[k] = the file's value of class k (int or str), or None.
    columns: names of the model's columns (CSV/TSV header), or None.
    label_name: the label column or array, or None.
    """

    path: Path
    values: Any
    value_columns: np.ndarray | None
    labels: np.ndarray | None
    classes: tuple | None
    columns: tuple[str, ...] | None
    label_name: str | None

    @property
    def num_rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def dim(self) -> int:
        cols = self.value_columns
        return int(self.values.shape[1] if cols is None else cols.size)

    def column_name(self, j: int) -> str:
        """A readable name of model column j: the header's, else 'column J' of the file."""
        if self.columns is not None:
            return repr(self.columns[j])
        return f"column {j if self.value_columns is None else int(self.value_columns[j])}"

    def read(self, rows) -> np.ndarray:
        """float64 (k, d): the model's columns of the given rows (any order)."""
        rows = np.asarray(rows, np.int64)
        order = np.argsort(rows, kind="stable")
        out = np.empty((rows.size, self.dim), np.float64)
        block = np.asarray(self.values[rows[order]], np.float64)
        out[order] = block if self.value_columns is None else block[:, self.value_columns]
        return out

    def read_range(self, start: int, stop: int) -> np.ndarray:
        """float64 (stop - start, d): the model's columns of rows start..stop - 1."""
        block = np.asarray(self.values[start:stop], np.float64)
        return block if self.value_columns is None else block[:, self.value_columns]


class Standardization(NamedTuple):
    """The affine map z = (x - mean) / std of the data, mean and std (d,) float64."""

    mean: np.ndarray
    std: np.ndarray

    @property
    def log_scale(self) -> float:
        """sum_i log std_i: NLL in data units = NLL of z + log_scale."""
        return float(np.sum(np.log(self.std)))

    def to_model(self, x) -> np.ndarray:
        """(n, d) data units -> standardised units, in float64."""
        return (np.asarray(x, np.float64) - self.mean) / self.std

    def to_data(self, z) -> np.ndarray:
        """(n, d) standardised units -> data units, in float64."""
        return np.asarray(z, np.float64) * self.std + self.mean


def _bad(path, what: str) -> ValueError:
    return ValueError(f"{path}: {what}.")


# ---------------------------------------------------------------------------- reading


def load_table(path, label: str | None = None, key: str | None = None) -> Table:
    """Read and validate `path` (see the module docstring); returns a Table."""
    path = Path(os.fspath(path)).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such data file.")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise _bad(path, f"unknown extension {path.suffix!r}; expected one of {SUFFIXES}")
    label = label or None
    if key and suffix != ".npz":
        raise _bad(path, f"key={key!r} applies to .npz archives only")
    readers = {".npy": _read_npy, ".npz": _read_npz, ".csv": _read_text, ".tsv": _read_text}
    table = readers[suffix](path, label, key or None)
    if table.dim < 1:
        raise _bad(path, "no columns are left for the model besides the label column")
    _check_finite_and_varying(table)
    return table


def _check_array(path, array, what: str = "the array") -> None:
    if array.ndim != 2:
        hint = " (one column: save x.reshape(-1, 1))" if array.ndim == 1 else ""
        raise _bad(path, f"{what} must be 2-D (rows, columns); got shape {array.shape}{hint}")
    if not np.issubdtype(array.dtype, np.number) or np.issubdtype(array.dtype, np.complexfloating):
        raise _bad(path, f"{what} must hold real numbers; got dtype {array.dtype}")
    if array.shape[0] == 0:
        raise _bad(path, f"{what} has no rows")


def _read_npy(path: Path, label, key) -> Table:
    del key
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise _bad(path, f"not a readable .npy array ({err})") from err
    _check_array(path, array)
    if label is None:
        return Table(path, array, None, None, None, None, None)
    if not label.lstrip("-").isdigit() or not -array.shape[1] <= int(label) < array.shape[1]:
        raise _bad(
            path,
            f"no label column {label!r}: for a .npy file label= is a column index in "
            f"0..{array.shape[1] - 1}",
        )
    j = int(label) % array.shape[1]
    column = np.concatenate(
        [np.asarray(array[s : s + SCAN_CHUNK_ROWS, j]) for s in _starts(array.shape[0])]
    )
    labels, classes = _numeric_classes(path, column, f"label column {j}")
    keep = np.delete(np.arange(array.shape[1]), j)
    return Table(path, array, keep, labels, classes, None, str(j))


def _read_npz(path: Path, label, key) -> Table:
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as err:
        raise _bad(path, f"not a readable .npz archive ({err})") from err
    if label is not None and label not in arrays:
        raise _bad(path, f"no label array {label!r}; the archive holds {sorted(arrays)}")
    candidates = sorted(n for n in arrays if n != label)
    if key is None and len(candidates) != 1:
        raise _bad(path, f"holds the arrays {candidates}: name the data with key=NAME")
    key = key if key is not None else candidates[0]
    if key not in arrays:
        raise _bad(path, f"no array {key!r}; the archive holds {sorted(arrays)}")
    values = arrays[key]
    _check_array(path, values, f"array {key!r}")
    if label is None:
        return Table(path, values, None, None, None, None, None)
    labels, classes = _npz_classes(path, arrays[label], label, key, values.shape[0])
    return Table(path, values, None, labels, classes, None, label)


def _npz_classes(path: Path, column: np.ndarray, label: str, key: str, num_rows: int):
    """(labels, classes) of the label array of an .npz archive, one class per data row."""
    if column.shape != (num_rows,):
        raise _bad(
            path,
            f"label array {label!r} must have shape ({num_rows},) (one class per row of "
            f"{key!r}); got {column.shape}",
        )
    if np.issubdtype(column.dtype, np.number):
        return _numeric_classes(path, column, f"label array {label!r}")
    return _string_classes(path, column.astype(str), f"label array {label!r}")


def _read_text(path: Path, label, key) -> Table:
    del key
    header, rows = _csv_rows(path)
    if label is not None and label not in header:
        raise _bad(path, f"no label column {label!r}; the columns are {header}")
    names = tuple(name for name in header if name != label)
    cells = np.asarray(rows, dtype=str).reshape(len(rows), len(header))
    index = {name: i for i, name in enumerate(header)}
    values = np.empty((len(rows), len(names)), np.float64)
    for j, name in enumerate(names):
        values[:, j] = _numeric_column(path, cells[:, index[name]], name)
    if label is None:
        return Table(path, values, None, None, None, names, None)
    labels, classes = _text_classes(path, cells[:, index[label]], f"label column {label!r}")
    return Table(path, values, None, labels, classes, names, label)


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    """(header, data rows) of a CSV/TSV file; ragged rows and a missing header rejected."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = [(n, row) for n, row in enumerate(csv.reader(f, delimiter=delimiter), 1)]
    except (UnicodeDecodeError, csv.Error) as err:
        raise _bad(path, f"not a readable text table ({err})") from err
    lines = [(n, [cell.strip() for cell in row]) for n, row in lines if any(c.strip() for c in row)]
    if len(lines) < 2:
        raise _bad(path, "needs a header row and at least one data row")
    header = lines[0][1]
    if len(set(header)) != len(header) or "" in header:
        raise _bad(path, f"the header row must name every column once; got {header}")
    if all(_is_number(cell) for cell in header):
        raise _bad(path, f"the first row {header} looks like data: add a header row of names")
    for n, row in lines[1:]:
        if len(row) != len(header):
            raise _bad(path, f"line {n} has {len(row)} fields; the header has {len(header)}")
    return header, [row for _, row in lines[1:]]


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _numeric_column(path: Path, cells: np.ndarray, name: str) -> np.ndarray:
    """float64 (n,) of one CSV column of strings; missing cells are NaN (rejected later)."""
    present = ~np.isin(np.char.lower(cells), _MISSING)
    column = np.full(cells.shape, np.nan)
    try:
        column[present] = cells[present].astype(np.float64)
    except ValueError:
        i = next(i for i in np.flatnonzero(present) if not _is_number(cells[i]))
        raise _bad(
            path,
            f"column {name!r} is not numeric: row {i} holds {str(cells[i])!r}; drop the "
            f"column or name it as the class column with label=",
        ) from None
    return column


# ----------------------------------------------------------------------------- labels


def _numeric_classes(path, column: np.ndarray, what: str):
    column = np.asarray(column)
    with np.errstate(invalid="ignore"):
        bad = np.flatnonzero(~(np.isfinite(column) & (column == np.round(column))))
    if bad.size:
        raise _bad(path, f"{what} must hold integer classes; row {bad[0]} holds {column[bad[0]]!r}")
    values, labels = np.unique(column.astype(np.int64), return_inverse=True)
    return labels.astype(np.int32), tuple(int(v) for v in values)


def _string_classes(path, column: np.ndarray, what: str):
    empty = np.flatnonzero(np.char.str_len(column.astype(str)) == 0)
    if empty.size:
        raise _bad(path, f"{what} has {empty.size} empty values; the first in row {empty[0]}")
    values, labels = np.unique(column, return_inverse=True)
    return labels.astype(np.int32), tuple(str(v) for v in values)


def _text_classes(path, cells: np.ndarray, what: str):
    """Classes of a CSV column: integers when every cell is one, else strings."""
    strings = np.asarray(cells, str)
    try:
        ints = np.asarray([int(cell) for cell in strings], np.int64)
    except ValueError:
        return _string_classes(path, strings, what)
    return _numeric_classes(path, ints, what)


# ------------------------------------------------------------------------- validation


def _starts(num_rows: int, chunk: int = SCAN_CHUNK_ROWS) -> range:
    return range(0, num_rows, chunk)


def _check_finite_and_varying(table: Table) -> None:
    """One chunked pass: no NaN or inf anywhere, no column constant over the file."""
    num_bad, first_bad = 0, None
    low = np.full(table.dim, np.inf)
    high = np.full(table.dim, -np.inf)
    for start in _starts(table.num_rows):
        block = table.read_range(start, start + SCAN_CHUNK_ROWS)
        bad = ~np.isfinite(block)
        if bad.any():
            if first_bad is None:
                row, col = np.argwhere(bad)[0]
                first_bad = (start + int(row), table.column_name(int(col)))
            num_bad += int(bad.sum())
            continue
        low, high = np.minimum(low, block.min(axis=0)), np.maximum(high, block.max(axis=0))
    if num_bad:
        row, name = first_bad
        raise _bad(
            table.path,
            f"{num_bad} NaN or infinite values (missing cells count as NaN); the first in row "
            f"{row}, {name}",
        )
    constant = [j for j in range(table.dim) if low[j] == high[j]]
    if constant:
        raise _constant_error(table, constant, low, "every row")


def _constant_error(table: Table, columns, values, where: str) -> ValueError:
    names = ", ".join(f"{table.column_name(j)} (= {float(values[j])!r})" for j in columns)
    return _bad(
        table.path,
        f"constant column(s) over {where}: {names}; a constant has no density: drop it",
    )


# ------------------------------------------------------------------ splits and scaling


def split_rows(num_rows: int, validation_fraction: float, test_fraction: float, seed: int):
    """(train, validation, test) sorted int64 row indices (see the module docstring).

    Raises ValueError unless 0 <= each fraction and their sum < 1.
    """
    fractions = (validation_fraction, test_fraction)
    if not all(0 <= f < 1 for f in fractions) or sum(fractions) >= 1:
        raise ValueError(
            f"the validation and test fractions must be >= 0 with a sum below 1; got "
            f"{validation_fraction}, {test_fraction}."
        )
    order = np.random.default_rng(seed).permutation(num_rows)
    n_test = round(test_fraction * num_rows)
    n_validation = round(validation_fraction * num_rows)
    parts = np.split(order, [n_test, n_test + n_validation])
    test, validation, train = (np.sort(p) for p in parts)
    return train, validation, test


def fit_standardization(table: Table, rows: np.ndarray, chunk: int = SCAN_CHUNK_ROWS):
    """Standardization of `rows` of `table`: mean and std (ddof = 0) per column, float64.

    Chunks of `chunk` rows are merged with Chan et al.'s pairwise update, so memory is
    O(chunk d). Raises ValueError naming a column that is constant over these rows.
    """
    count, mean, m2 = 0, np.zeros(table.dim), np.zeros(table.dim)
    for start in range(0, rows.size, chunk):
        block = table.read(rows[start : start + chunk])
        n, block_mean = block.shape[0], block.mean(axis=0)
        block_m2 = np.sum((block - block_mean) ** 2, axis=0)
        delta, total = block_mean - mean, count + n
        mean = mean + delta * (n / total)
        m2 = m2 + block_m2 + delta**2 * (count * n / total)
        count = total
    std = np.sqrt(m2 / max(count, 1))
    constant = [j for j in range(table.dim) if not std[j] > 0]
    if constant:
        raise _constant_error(table, constant, mean, f"the {count} training rows")
    return Standardization(mean, std)


class StandardizedRows:
    """Rows of a table in standardised units: a source for `host_batches`.

    `source[indices]` (an integer array or a slice) -> float32 (k, d), row k being
    (table row rows[indices[k]] - mean) / std computed in float64. `labels` holds the
    classes of these rows (int32 (n,)) or None; `np.asarray(source)` reads them all.
    """

    def __init__(self, table: Table, rows: np.ndarray, scaling: Standardization):
        self.table, self.rows, self.scaling = table, np.asarray(rows, np.int64), scaling
        self.labels = None if table.labels is None else table.labels[self.rows]
        self.shape = (int(self.rows.size), table.dim)

    def __len__(self) -> int:
        return int(self.rows.size)

    def __getitem__(self, indices) -> np.ndarray:
        rows = self.rows[indices]
        return self.scaling.to_model(self.table.read(np.atleast_1d(rows))).astype(np.float32)

    def __array__(self, dtype=None, copy=None):
        del copy
        return np.asarray(self[:], dtype=dtype)

    def with_scaling(self, scaling: Standardization) -> StandardizedRows:
        return StandardizedRows(self.table, self.rows, scaling)


def check_split_sizes(table: Table, sizes: dict, minimum_train: int) -> None:
    """ValueError naming the file when a split is empty or train < minimum_train rows."""
    if sizes["train"] < minimum_train or sizes["test"] < 1:
        raise _bad(
            table.path,
            f"{table.num_rows} rows are too few for the splits (train {sizes['train']}, "
            f"validation {sizes['validation']}, test {sizes['test']}): the training split "
            f"needs at least one batch of {minimum_train} rows (training.batch_size) and the "
            f"test split at least one row",
        )


def describe(table: Table, scaling: Standardization) -> dict:
    """A JSON-ready record of the file, its columns, classes and standardisation."""
    return {
        "path": os.fspath(table.path.resolve()),
        "num_rows": table.num_rows,
        "dim": table.dim,
        "columns": None if table.columns is None else list(table.columns),
        "label": table.label_name,
        "classes": None if table.classes is None else list(table.classes),
        "mean": [float(v) for v in scaling.mean],
        "std": [float(v) for v in scaling.std],
        "log_scale": scaling.log_scale,
    }


def scaling_from_record(record: dict) -> Standardization:
    """The Standardization stored by `describe`."""
    mean, std = np.asarray(record["mean"], np.float64), np.asarray(record["std"], np.float64)
    if mean.shape != std.shape or mean.ndim != 1 or not np.all(std > 0):
        raise ValueError(f"a stored standardisation needs mean, std (d,), std > 0; got {record}.")
    return Standardization(mean, std)
