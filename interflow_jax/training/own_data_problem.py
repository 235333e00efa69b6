"""Problems from a user's own files: a data matrix (`data.kind = 'own_data'`) or a folder
of images (`data.kind = 'image_folder'`), built at the config boundary like the others.

Both end in the `FiniteData` of the tabular path. Everything is read and validated
before the training loop writes anything, so bad input leaves the workdir untouched.

A data matrix is split (seeded, `data.validation_fraction`, `data.test_fraction`,
`data.split_seed`) and standardised with the training split's mean and std: the model
sees z = (x - m) / s, and an NLL in standardised units becomes one in the data's own
units by adding sum_i log s_i (`data_unit_metrics`). The file's record (path, columns,
classes and the standardisation) is written to `<workdir>/data_record.json` when training
starts; a resumed run, `evaluate` and `sample` use the stored standardisation, so the
model's units stay fixed even if the file changes, and sampling needs the workdir only.

Labels: each split's source carries `labels` (int32, classes 0..K-1, or None) for its
rows, and the record lists `classes` (the file's value or folder name of class k).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Any, NamedTuple

import jax
import numpy as np
from absl import logging

from interflow_jax.data import image_folder, images, own_data
from interflow_jax.training import checkpoint, setup

RECORD_FILE = "data_record.json"


class DataRecord(NamedTuple):
    """What a problem built from a user's files keeps beside the model.

    record: JSON-ready description (path, shape, columns, classes, mean, std);
    scaling: the Standardization of a data matrix, None for images.
    """

    record: dict
    scaling: own_data.Standardization | None


def _identity(raw, key):
    del key
    return raw


def _check_fractions(data, names) -> None:
    for name in names:
        value = data[name]
        if isinstance(value, bool) or not 0 <= value < 1:
            raise ValueError(f"config.data.{name} must lie in [0, 1); got {value!r}.")


def build_problem(config) -> setup.Problem:
    """config.data.kind 'own_data' (a data matrix) or 'image_folder'."""
    if config.data.kind == "image_folder":
        return image_folder_problem(config)
    return table_problem(config)


def table_problem(config) -> setup.Problem:
    """A data matrix from config.data.path (label, key optional); see the module docstring."""
    data = config.data
    _check_fractions(data, ("validation_fraction", "test_fraction"))
    table = own_data.load_table(data.path, data.label or None, data.key or None)
    splits = own_data.split_rows(
        table.num_rows, data.validation_fraction, data.test_fraction, int(data.split_seed)
    )
    sizes = dict(zip(("train", "validation", "test"), (s.size for s in splits), strict=True))
    own_data.check_split_sizes(table, sizes, int(config.training.batch_size))
    if sizes["validation"] == 0 and config.eval.num_validation_points > 0:
        raise ValueError(
            f"{table.path}: the validation split is empty (data.validation_fraction="
            f"{data.validation_fraction}); set eval.num_validation_points=0 and "
            f"eval.select_best=False, or a positive validation fraction."
        )
    scaling = own_data.fit_standardization(table, splits[0])
    train, validation, test = (own_data.StandardizedRows(table, s, scaling) for s in splits)
    record = dict(own_data.describe(table, scaling), kind="own_data", split_sizes=sizes)
    finite = setup.FiniteData(train, validation if len(validation) else None, test, _identity)
    shape = (table.dim,)
    base = setup.build_base(config, shape)
    name = table.path.stem
    return setup.Problem(shape, base, None, None, name, finite, DataRecord(record, scaling))


def image_folder_problem(config) -> setup.Problem:
    """Images of the folder config.data.dir (sub-folders = classes), resized to
    config.data.image_size (0: the smallest side), dequantised in the step as the TFDS
    images; a seeded test split of data.test_fraction, no validation split."""
    data = config.data
    size = int(data.image_size) or None
    folder = image_folder.load_image_folder(data.dir, size)
    train, test = image_folder.split_images(folder, data.test_fraction, int(data.split_seed))
    sources = [
        image_folder.LabelledImages(
            folder.images[rows], None if folder.labels is None else folder.labels[rows]
        )
        for rows in (train, test)
    ]
    levels = images.NUM_LEVELS_8BIT

    def preprocess(raw, key):
        return images.dequantize(raw, key, levels)

    finite = setup.FiniteData(sources[0], None, sources[1], preprocess, levels)
    record = dict(image_folder.describe(folder), kind="image_folder")
    record["split_sizes"] = {"train": int(train.size), "test": int(test.size)}
    shape = tuple(int(n) for n in folder.images.shape[1:])
    base = setup.build_base(config, shape)
    return setup.Problem(
        shape, base, None, None, folder.root.name, finite, DataRecord(record, None)
    )


# ---------------------------------------------------------------------- the workdir


def record_path(workdir: str) -> str:
    return os.path.join(workdir, RECORD_FILE)


def read_record(workdir: str) -> dict | None:
    """The stored data record of a workdir, or None."""
    path = record_path(workdir)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def bind_to_workdir(problem: setup.Problem, workdir: str, write: bool) -> setup.Problem:
    """The problem in the units stored in `workdir` (resume, evaluate), or, when none are
    stored and `write`, store this problem's record there (process 0)."""
    info = problem.data_record
    if info is None:
        return problem
    stored = read_record(workdir)
    if stored is None:
        if write and jax.process_index() == 0:
            checkpoint.write_json_atomic(record_path(workdir), info.record)
        return problem
    scaling = None if info.scaling is None else own_data.scaling_from_record(stored)
    _warn_if_changed(info, stored, scaling, workdir)
    return problem if scaling is None else _with_scaling(problem, scaling, stored)


def _warn_if_changed(info: DataRecord, stored: dict, scaling, workdir: str) -> None:
    """Warn when the data's classes or training statistics differ from the stored ones."""
    where = (info.record["path"], record_path(workdir))
    if stored.get("classes") != info.record.get("classes"):
        logging.warning(
            "The classes of %s differ from those stored in %s (%s); labels follow the file.",
            *where,
            stored.get("classes"),
        )
    if scaling is not None and not (
        np.allclose(scaling.mean, info.scaling.mean) and np.allclose(scaling.std, info.scaling.std)
    ):
        logging.warning(
            "The training split of %s has another mean or std than stored in %s: the file "
            "changed since training; the stored standardisation is used.",
            *where,
        )


def _with_scaling(problem, scaling, stored: dict):
    finite = problem.finite
    splits = [None if s is None else s.with_scaling(scaling) for s in finite[:3]]
    finite = finite._replace(train=splits[0], validation=splits[1], test=splits[2])
    record = dict(problem.data_record.record, mean=stored["mean"], std=stored["std"])
    record["log_scale"] = scaling.log_scale
    return problem._replace(finite=finite, data_record=DataRecord(record, scaling))


def problem_from_record(config, workdir: str) -> setup.Problem | None:
    """A problem for sampling, from `<workdir>/data_record.json` alone (the data files
    are not read), or None when the workdir holds no record."""
    stored = read_record(workdir)
    if stored is None:
        return None
    levels = images.NUM_LEVELS_8BIT
    if stored["kind"] == "image_folder":
        shape = tuple(stored["image_shape"])
        empty = np.zeros((0, *shape), np.uint8)
        finite = setup.FiniteData(empty, None, empty, _identity, levels)
        info = DataRecord(stored, None)
    else:
        shape, finite = (int(stored["dim"]),), None
        info = DataRecord(stored, own_data.scaling_from_record(stored))
    base = setup.build_base(config, shape)
    name = os.path.splitext(os.path.basename(stored["path"]))[0]
    return setup.Problem(shape, base, None, None, name, finite, info)


# ----------------------------------------------------------------- units of results


def data_unit_metrics(problem: setup.Problem, results: dict) -> dict:
    """For standardised data: the NLLs of `results` in the data's own units (+ sum log s)
    under their names, the standardised ones as `*_standardized`; else {}."""
    info = problem.data_record
    if info is None or info.scaling is None:
        return {}
    shift = info.scaling.log_scale
    out = {"standardization_log_scale": shift}
    for name in ("test_nll", "hutchinson_nll", "conditional_test_nll"):
        if name in results:
            out[f"{name}_standardized"] = results[name]
            out[name] = results[name] + shift
    return out


def to_data_units(problem: setup.Problem, x) -> np.ndarray:
    """Samples (n, d) in the data's own units (unchanged unless standardised)."""
    info = problem.data_record
    if info is None or info.scaling is None:
        return np.asarray(x)
    return info.scaling.to_data(x)


def write_table(problem: setup.Problem, x: np.ndarray, path: str) -> str | None:
    """Write samples (n, d) in data units as CSV with the input's header (CSV/TSV input
    only); returns the path written, or None."""
    info = problem.data_record
    columns: Any = None if info is None else info.record.get("columns")
    if columns is None:
        return None
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(np.asarray(x, np.float64).tolist())
    return path
