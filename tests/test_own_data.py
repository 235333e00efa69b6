"""A user's own files: data matrices (.npy, .npz, .csv, .tsv) and image folders.

Every input error, the label mapping, the split and the standardisation, the NLL in the
data's own units on an exactly known Gaussian, the stored record of a workdir, and (slow)
the binaries end to end and the d = 21 mixture trained from a file."""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments.configs import images as images_config
from experiments.configs import own_data as own_data_config
from interflow_jax import densities, flows, gaussian, interpolants
from interflow_jax.data import image_folder, images, own_data
from interflow_jax.training import evaluation, own_data_problem, setup
from interflow_jax.training.loop import train_and_evaluate

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_csv(path, header, rows, delimiter=","):
    lines = [delimiter.join(header)] + [delimiter.join(str(v) for v in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _gaussian_rows(n=200, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.arange(1, d + 1) + 10.0


def _config(path, extra=""):
    return own_data_config.get_config(f"path={path}{extra},smoke")


# ------------------------------------------------------------------------ input errors


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.csv: no such data file"):
        own_data.load_table(tmp_path / "nothere.csv")


def test_unknown_extension_is_named(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"data.txt: unknown extension '.txt'"):
        own_data.load_table(path)


def test_non_numeric_column_is_named(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["a", "colour", "b"], [[1, "red", 2], [3, "blue", 4]])
    with pytest.raises(
        ValueError, match=r"d.csv: column 'colour' is not numeric: row 0 holds 'red'"
    ):
        own_data.load_table(path)


def test_nan_and_inf_are_counted_with_the_first_row(tmp_path):
    rows = [[1, 2], [3, 4], [5, "nan"], ["inf", 6], [7, ""], [8, 9]]
    path = _write_csv(tmp_path / "d.csv", ["a", "b"], rows)
    with pytest.raises(ValueError, match=r"d.csv: 3 NaN or infinite values.*first in row 2, 'b'"):
        own_data.load_table(path)
    values = np.arange(20.0).reshape(10, 2)
    values[7, 1], values[9, 0] = np.inf, np.nan
    np.save(tmp_path / "d.npy", values)
    with pytest.raises(ValueError, match=r"d.npy: 2 NaN or infinite values.*row 7, column 1"):
        own_data.load_table(tmp_path / "d.npy")


def test_constant_column_is_named(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["a", "flat", "b"], [[1, 5, 2], [3, 5, 1], [4, 5, 0]])
    with pytest.raises(ValueError, match=r"d.csv: constant column.*'flat' \(= 5.0\).*no density"):
        own_data.load_table(path)


def test_column_constant_over_the_training_split_is_named(tmp_path):
    values = _gaussian_rows(50, 2)
    train, _, _ = own_data.split_rows(50, 0.1, 0.1, seed=0)
    values[train, 1] = 7.0  # varies over the file, constant over the training rows
    np.save(tmp_path / "d.npy", values)
    table = own_data.load_table(tmp_path / "d.npy")
    with pytest.raises(
        ValueError, match=r"d.npy: constant column.* the 40 training rows: column 1 "
    ):
        own_data.fit_standardization(table, train)


def test_too_few_rows_for_the_splits(tmp_path):
    np.save(tmp_path / "d.npy", _gaussian_rows(60, 2))
    config = _config(tmp_path / "d.npy")  # batch 64 > 48 training rows
    with pytest.raises(ValueError, match=r"d.npy: 60 rows are too few for the splits \(train 48"):
        setup.build_problem(config)


def test_missing_label_column_is_named(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["a", "b"], [[1, 2], [3, 4]])
    with pytest.raises(ValueError, match=r"d.csv: no label column 'kind'; the columns are"):
        own_data.load_table(path, label="kind")
    np.save(tmp_path / "d.npy", _gaussian_rows(10, 2))
    with pytest.raises(ValueError, match=r"d.npy: no label column '2'"):
        own_data.load_table(tmp_path / "d.npy", label="2")


@pytest.mark.parametrize("shape", [(12,), (3, 4, 2)])
def test_arrays_that_are_not_2d_are_rejected(tmp_path, shape):
    np.save(tmp_path / "d.npy", np.ones(shape))
    with pytest.raises(ValueError, match=rf"d.npy: the array must be 2-D.*{shape}"):
        own_data.load_table(tmp_path / "d.npy")


def test_csv_without_a_header_and_ragged_rows(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["1.5", "2"], [[3, 4]])
    with pytest.raises(ValueError, match="looks like data: add a header row"):
        own_data.load_table(path)
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(ValueError, match="d.csv: line 3 has 1 fields; the header has 2"):
        own_data.load_table(path)


def test_npz_needs_a_key_when_it_holds_several_arrays(tmp_path):
    x, y = _gaussian_rows(20, 2), _gaussian_rows(20, 3, seed=1)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    with pytest.raises(ValueError, match=r"holds the arrays \['x', 'y'\]: name the data with key"):
        own_data.load_table(tmp_path / "d.npz")
    np.testing.assert_array_equal(own_data.load_table(tmp_path / "d.npz", key="y").values, y)
    with pytest.raises(ValueError, match=r"no array 'z'"):
        own_data.load_table(tmp_path / "d.npz", key="z")


def test_errors_leave_the_workdir_unwritten(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["a", "b"], [[1, 2], [3, "x"]])
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="column 'b' is not numeric"):
        train_and_evaluate(_config(path), str(workdir))
    assert not workdir.exists()


# -------------------------------------------------------------------- labels and splits


def test_string_labels_map_to_sorted_classes(tmp_path):
    rows = [[1.0, "versicolor", 2.0], [2.5, "setosa", 1.0], [0.5, "virginica", 3.0]]
    rows += [[4.0, "setosa", 0.0]]
    table = own_data.load_table(
        _write_csv(tmp_path / "d.tsv", ["x", "species", "y"], rows, "\t"), label="species"
    )
    assert table.classes == ("setosa", "versicolor", "virginica")
    np.testing.assert_array_equal(table.labels, [1, 0, 2, 0])
    assert table.columns == ("x", "y")
    np.testing.assert_array_equal(table.read(np.arange(4)), [[1, 2], [2.5, 1], [0.5, 3], [4, 0]])


def test_integer_labels_sort_numerically(tmp_path):
    rows = [[0.1, 10], [0.2, 3], [0.3, 7], [0.4, 10]]
    table = own_data.load_table(_write_csv(tmp_path / "d.csv", ["x", "c"], rows), label="c")
    assert table.classes == (3, 7, 10)
    np.testing.assert_array_equal(table.labels, [2, 0, 1, 2])


def test_npy_label_column_and_npz_label_array(tmp_path):
    values = _gaussian_rows(30, 3)
    classes = np.random.default_rng(0).choice([-1, 4, 9], 30)
    np.save(tmp_path / "d.npy", np.column_stack([values[:, :1], classes, values[:, 1:]]))
    table = own_data.load_table(tmp_path / "d.npy", label="1")
    assert isinstance(table.values, np.memmap) and table.classes == (-1, 4, 9)
    np.testing.assert_array_equal(np.asarray(table.classes)[table.labels], classes)
    np.testing.assert_array_equal(table.read(np.array([5, 2])), values[[5, 2]])
    names = np.where(classes > 0, "big", "small")
    np.savez(tmp_path / "d.npz", x=values, kind=names)
    table = own_data.load_table(tmp_path / "d.npz", label="kind")
    np.testing.assert_array_equal(np.asarray(table.classes)[table.labels], names)
    with pytest.raises(ValueError, match="integer classes; row 3"):
        np.save(tmp_path / "f.npy", np.column_stack([values, np.r_[0, 1, 2, 0.5, np.ones(26)]]))
        own_data.load_table(tmp_path / "f.npy", label="3")


def test_label_mapping_is_saved_with_the_workdir(tmp_path):
    rng = np.random.default_rng(0)
    species = rng.choice(["b", "a", "c"], 100)
    rows = [[*v, s] for v, s in zip(_gaussian_rows(100, 2).round(6), species, strict=True)]
    path = _write_csv(tmp_path / "d.csv", ["u", "w", "species"], rows)
    problem = setup.build_problem(_config(path, ",label=species"))
    own_data_problem.bind_to_workdir(problem, str(tmp_path), write=True)
    record = json.loads((tmp_path / own_data_problem.RECORD_FILE).read_text())
    assert record["classes"] == ["a", "b", "c"] and record["columns"] == ["u", "w"]
    assert record["label"] == "species"
    finite = problem.finite
    for source in (finite.train, finite.validation, finite.test):
        np.testing.assert_array_equal(
            np.asarray(record["classes"])[source.labels], species[source.rows]
        )


def test_split_is_seeded_disjoint_and_complete():
    train, validation, test = own_data.split_rows(1000, 0.15, 0.2, seed=3)
    assert (train.size, validation.size, test.size) == (650, 150, 200)
    joined = np.concatenate([train, validation, test])
    np.testing.assert_array_equal(np.sort(joined), np.arange(1000))
    again = own_data.split_rows(1000, 0.15, 0.2, seed=3)
    other = own_data.split_rows(1000, 0.15, 0.2, seed=4)
    np.testing.assert_array_equal(again[2], test)
    assert not np.array_equal(other[2], test)
    with pytest.raises(ValueError, match="sum below 1"):
        own_data.split_rows(10, 0.5, 0.5, seed=0)


# ------------------------------------------------------------------- standardisation


def test_standardization_statistics_over_the_training_split(tmp_path):
    values = _gaussian_rows(1000, 3) * np.array([1.0, 1e3, 1e-3]) + np.array([0.0, 5e6, -2.0])
    np.save(tmp_path / "d.npy", values)
    table = own_data.load_table(tmp_path / "d.npy")
    train, _, _ = own_data.split_rows(1000, 0.1, 0.1, seed=0)
    scaling = own_data.fit_standardization(table, train, chunk=97)  # uneven chunks merged
    np.testing.assert_allclose(scaling.mean, values[train].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(scaling.std, values[train].std(axis=0), rtol=1e-9)
    source = own_data.StandardizedRows(table, train, scaling)
    z = np.asarray(source, np.float64)
    assert z.dtype == np.float64 and source[np.array([4, 1])].dtype == np.float32
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(scaling.to_data(z), values[train], rtol=1e-6)
    assert scaling.log_scale == pytest.approx(np.log(values[train].std(axis=0)).sum())


def test_stored_standardization_is_used_after_the_file_changes(tmp_path):
    path = tmp_path / "d.npy"
    values = _gaussian_rows(300, 2)
    np.save(path, values)
    config = _config(path)
    first = own_data_problem.bind_to_workdir(setup.build_problem(config), str(tmp_path), True)
    assert isinstance(first.finite.train.table.values, np.memmap)  # read by row, on demand
    np.save(path, 2.0 * values)
    second = own_data_problem.bind_to_workdir(setup.build_problem(config), str(tmp_path), False)
    stored = first.data_record.scaling
    np.testing.assert_array_equal(second.data_record.scaling.mean, stored.mean)
    rows = second.finite.test.rows
    np.testing.assert_allclose(
        second.finite.test[:], (2.0 * values[rows] - stored.mean) / stored.std, rtol=1e-5
    )
    os.remove(path)  # sampling needs the workdir only
    alone = own_data_problem.problem_from_record(config, str(tmp_path))
    assert alone.event_shape == (2,) and alone.finite is None
    np.testing.assert_array_equal(alone.data_record.scaling.std, stored.std)


def test_nll_in_data_units_on_an_exact_gaussian_model(tmp_path, x64):
    """A Gaussian file of non-unit scales; the flow of the exact velocity of the
    standardised data gives log p_z, and adding sum log s must give the true log-density
    in data units, log N(x; m, diag(s^2)), on the same points."""
    mean, scale = np.array([3.0, -200.0, 0.5]), np.array([0.5, 20.0, 3.0])
    values = np.random.default_rng(0).normal(size=(400, 3)) * scale + mean
    np.save(tmp_path / "g.npy", values)
    config = _config(tmp_path / "g.npy")
    problem = setup.build_problem(config)
    fitted = problem.data_record.scaling
    field = gaussian.make_gaussian_velocity(interpolants.TRIGONOMETRIC)
    options = flows.ODEOptions(rtol=1e-9, atol=1e-9)
    flow = flows.make_flow(field, densities.standard_gaussian((3,)), options)
    params = {
        "mean": jnp.asarray((mean - fitted.mean) / fitted.std),
        "cov": jnp.diag(jnp.asarray((scale / fitted.std) ** 2)),
    }
    z = evaluation.test_points(config, problem, 0).astype(jnp.float64)
    result, _ = evaluation.test_nll(config, flow, params, z)
    metrics = own_data_problem.data_unit_metrics(problem, result)
    x = fitted.to_data(z)
    true_nll = -np.asarray(gaussian.gaussian_log_prob(jnp.asarray(x), mean, np.diag(scale**2)))
    assert result["num_test_points"] == 40
    assert metrics["test_nll"] == pytest.approx(true_nll.mean(), abs=1e-5)
    assert metrics["test_nll_standardized"] == result["test_nll"]
    assert metrics["test_nll"] - result["test_nll"] == pytest.approx(np.log(fitted.std).sum())


def test_samples_table_keeps_the_header(tmp_path):
    path = _write_csv(tmp_path / "d.csv", ["height", "weight"], _gaussian_rows(100, 2).round(5))
    problem = setup.build_problem(_config(path))
    z = np.array([[0.0, 0.0], [1.0, -1.0]])
    x = own_data_problem.to_data_units(problem, z)
    own_data_problem.write_table(problem, x, str(tmp_path / "samples.csv"))
    lines = (tmp_path / "samples.csv").read_text().splitlines()
    assert lines[0] == "height,weight" and len(lines) == 3
    np.testing.assert_allclose(np.loadtxt(tmp_path / "samples.csv", delimiter=",", skiprows=1), x)
    np.testing.assert_allclose(x[0], problem.data_record.scaling.mean)


# ------------------------------------------------------------------------------ configs


def test_own_data_config_arguments(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = own_data_config.get_config("path=sub/d.csv,label=kind,smoke")
    assert config.data.path == str(tmp_path / "sub" / "d.csv") and config.data.label == "kind"
    with pytest.raises(ValueError, match="needs path=FILE"):
        own_data_config.get_config("label=kind")
    with pytest.raises(ValueError, match=r"unknown config argument\(s\) \['lable='\]"):
        own_data_config.get_config("path=d.csv,lable=kind")


def test_conditional_own_data_config_counts_the_label_classes(tmp_path):
    rows = [[f"{v:.6g}", kind] for v, kind in zip(range(30), ["a", "b", "c"] * 10, strict=True)]
    path = _write_csv(tmp_path / "d.csv", ["v", "kind"], rows)
    config = own_data_config.get_config(f"path={path},label=kind,conditional,smoke")
    assert config.model.num_classes == 3 and config.loss.p_uncond == 0.1
    with pytest.raises(ValueError, match="needs the class column as label=COLUMN"):
        own_data_config.get_config(f"path={path},conditional")
    with pytest.raises(ValueError, match="label column 'kinds'"):
        own_data_config.get_config(f"path={path},label=kinds,conditional")


def test_folder_config_arguments(tmp_path):
    config = images_config.get_config(f"folder,dir={tmp_path},size=12")
    assert config.data.kind == "image_folder" and config.data.image_size == 12
    assert config.model.unet.attention_resolutions == (6,)
    with pytest.raises(ValueError, match="even number of pixels; got '7'"):
        images_config.get_config(f"folder,dir={tmp_path},size=7")
    with pytest.raises(ValueError, match="folder needs dir=PATH"):
        images_config.get_config("folder")


# ------------------------------------------------------------------------ image folders


def _png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return pixels


def _class_folder(root, num_per_class=5):
    rng = np.random.default_rng(0)
    pixels = {}
    for name in ("zebra", "ant"):
        for i in range(num_per_class):
            shape = (12, 16, 3) if i % 2 else (18, 12, 3)
            pixels[f"{name}/{i}.png"] = _png(
                root / name / f"{i}.png", rng.integers(0, 256, shape, np.uint8)
            )
    return pixels


def test_image_folder_classes_crop_and_resize(tmp_path):
    pixels = _class_folder(tmp_path)
    folder = image_folder.load_image_folder(tmp_path, size=8)
    assert folder.classes == ("ant", "zebra") and folder.images.shape == (10, 8, 8, 3)
    assert folder.images.dtype == np.uint8
    for image, label, name in zip(folder.images, folder.labels, folder.files, strict=True):
        assert folder.classes[label] == name.split("/")[0]
        np.testing.assert_array_equal(image, images.center_crop_resize(pixels[name], 8))
    smallest = image_folder.load_image_folder(tmp_path)  # default: the smallest side
    assert smallest.images.shape == (10, 12, 12, 3)


def test_image_folder_without_classes_in_grey(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(4):
        _png(tmp_path / f"{i}.png", rng.integers(0, 256, (8, 8), np.uint8))
    (tmp_path / ".hidden").write_text("ignored")
    folder = image_folder.load_image_folder(tmp_path)
    assert folder.labels is None and folder.classes is None
    assert folder.images.shape == (4, 8, 8, 1)


def test_image_folder_names_bad_files(tmp_path):
    _class_folder(tmp_path, 2)
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"not PNG or JPEG images.*ant/notes.txt"):
        image_folder.load_image_folder(tmp_path)
    os.remove(tmp_path / "ant" / "notes.txt")
    (tmp_path / "zebra" / "fake.jpg").write_bytes(b"plain text, not a JPEG")
    with pytest.raises(ValueError, match=r"unreadable image files: zebra/fake.jpg"):
        image_folder.load_image_folder(tmp_path)
    os.remove(tmp_path / "zebra" / "fake.jpg")
    data = (tmp_path / "zebra" / "0.png").read_bytes()
    (tmp_path / "zebra" / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cannot be decoded: zebra/cut.png"):
        image_folder.load_image_folder(tmp_path)


def test_image_folder_layout_errors(tmp_path):
    _class_folder(tmp_path, 2)
    _png(tmp_path / "loose.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match=r"files beside the class folders.*loose.png"):
        image_folder.load_image_folder(tmp_path)
    os.remove(tmp_path / "loose.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"class folder 'empty' holds no images"):
        image_folder.load_image_folder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such image folder"):
        image_folder.load_image_folder(tmp_path / "absent")


def test_image_folder_problem_dequantises_like_the_tfds_path(tmp_path):
    _class_folder(tmp_path, 10)
    config = images_config.get_config(f"folder,dir={tmp_path},size=8,smoke")
    problem = setup.build_problem(config)
    finite = problem.finite
    assert problem.event_shape == (8, 8, 3) and finite.num_levels == 256
    assert (len(finite.train), len(finite.test)) == (18, 2)
    raw = finite.train[np.arange(5)]
    z = finite.preprocess(raw, jax.random.key(0))
    expected = images.dequantize(raw, jax.random.key(0), 256)
    np.testing.assert_array_equal(z, expected)
    assert problem.data_record.record["classes"] == ["ant", "zebra"]
    np.testing.assert_array_equal(
        np.concatenate([finite.train.labels, finite.test.labels]).sum(), 10
    )
    nll = {"test_nll": 100.0, "test_nll_stderr": 1.0}
    bpd = evaluation.bits_per_dim_metrics(problem, nll)["test_bits_per_dim"]
    assert bpd == pytest.approx(float(images.bits_per_dim(-100.0, 8 * 8 * 3, 256)))
    assert bpd == pytest.approx(100.0 / (192 * math.log(2)) - 1 + 8)


# ------------------------------------------------------------------ binaries end to end


def _binary(name, *flags):
    command = [sys.executable, os.path.join(ROOT, "experiments", f"{name}.py"), *flags]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_csv_train_evaluate_sample_binaries(tmp_path):
    rng = np.random.default_rng(0)
    kinds = rng.choice(["oak", "elm"], 400)
    values = rng.normal(size=(400, 2)) * [50.0, 0.01] + [1000.0, -3.0]
    rows = [[f"{a:.8g}", k, f"{b:.8g}"] for (a, b), k in zip(values, kinds, strict=True)]
    path = _write_csv(tmp_path / "trees.csv", ["girth", "kind", "ratio"], rows)
    workdir = tmp_path / "run"
    config = os.path.join(ROOT, "experiments", "configs", "own_data.py")
    _binary("train", f"--config={config}:path={path},label=kind,smoke", f"--workdir={workdir}")
    metrics = json.loads((workdir / "metrics.json").read_text())
    record = json.loads((workdir / own_data_problem.RECORD_FILE).read_text())
    assert record["classes"] == ["elm", "oak"] and record["columns"] == ["girth", "ratio"]
    assert metrics["num_test_points"] == 40 and metrics["selected_checkpoint"] == "best validation"
    shift = metrics["test_nll"] - metrics["test_nll_standardized"]
    assert shift == pytest.approx(record["log_scale"]) and record["log_scale"] < 0
    out = _binary("evaluate", f"--workdir={workdir}", "--metrics_name=again.json", "--nofigures")
    assert json.loads(out.stdout[out.stdout.index("{") :])["test_nll"] == pytest.approx(
        metrics["test_nll"], abs=1e-4
    )
    os.rename(path, tmp_path / "moved.csv")  # sampling needs the workdir only
    _binary("sample", f"--workdir={workdir}", "--num_samples=500")
    samples = np.load(workdir / "samples_ode.npy")
    table = np.loadtxt(workdir / "samples_ode.csv", delimiter=",", skiprows=1)
    assert (workdir / "samples_ode.csv").read_text().splitlines()[0] == "girth,ratio"
    np.testing.assert_allclose(table, samples, rtol=1e-12)
    assert samples.shape == (500, 2) and abs(np.median(samples[:, 0]) - 1000.0) < 100.0


@pytest.mark.slow
def test_conditional_csv_run_and_guided_samples_in_data_units(tmp_path):
    """Two classes far apart in data units: guided samples of each class land near it."""
    rng = np.random.default_rng(1)
    kinds = rng.choice(["low", "high"], 600)
    centre = np.where(kinds == "high", 500.0, -500.0)[:, None]
    values = centre + rng.normal(size=(600, 2)) * [20.0, 0.5]
    rows = [[f"{a:.8g}", k, f"{b:.8g}"] for (a, b), k in zip(values, kinds, strict=True)]
    path = _write_csv(tmp_path / "two.csv", ["x", "kind", "y"], rows)
    workdir = tmp_path / "run"
    config = own_data_config.get_config(f"path={path},label=kind,conditional,smoke")
    config.model.hidden_sizes = (64, 64)
    config.training.update(
        num_steps=1500, steps_per_call=50, log_every=50, checkpoint_every=1500, eval_every=1500
    )
    results = train_and_evaluate(config, str(workdir))
    shift = results["standardization_log_scale"]  # both NLLs in data units
    assert results["conditional_test_nll"] == pytest.approx(
        results["conditional_test_nll_standardized"] + shift
    )
    assert results["conditional_test_nll"] < results["test_nll"] - math.log(2) / 2
    output = tmp_path / "guided.npz"
    _binary(
        "sample",
        f"--workdir={workdir}",
        "--label=all",
        "--guidance=1",
        "--num_samples=50",
        f"--output={output}",
    )
    saved = np.load(output)
    np.testing.assert_array_equal(saved["labels"], np.repeat([0, 1], 50))  # high, low
    medians = [np.median(saved["samples"][saved["labels"] == k, 0]) for k in (0, 1)]
    assert medians[0] > 250.0 and medians[1] < -250.0, medians


@pytest.mark.slow
def test_image_folder_smoke_end_to_end(tmp_path):
    _class_folder(tmp_path / "pictures", 10)
    config = images_config.get_config(f"folder,dir={tmp_path / 'pictures'},smoke")
    results = train_and_evaluate(config, str(tmp_path / "run"))
    assert np.isfinite(results["test_bits_per_dim"]) and results["num_test_points"] == 2
    record = json.loads((tmp_path / "run" / own_data_problem.RECORD_FILE).read_text())
    assert record["classes"] == ["ant", "zebra"] and record["image_shape"] == [8, 8, 3]
    assert (tmp_path / "run" / "samples.png").exists()


@pytest.mark.slow
def test_mixture_file_through_own_data_matches_the_mixture_config(tmp_path):
    """The d = 21 mixture's finite data set written to .npy and .csv trains through
    own_data.py to the test NLL of mixture.py:21,train=N (same N, same budget)."""
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    try:
        import own_data_vs_mixture
    finally:
        sys.path.remove(os.path.join(ROOT, "benchmarks"))
    results = own_data_vs_mixture.main(["--smoke", f"--outdir={tmp_path}"])
    reference = results.pop("mixture.py")
    assert set(results) == {"own_data.py (npy)", "own_data.py (csv)"}
    for metrics in results.values():
        assert metrics["num_test_points"] == reference["num_test_points"] == 600
        se = math.hypot(metrics["test_nll_stderr"], reference["test_nll_stderr"])
        assert abs(metrics["test_nll"] - reference["test_nll"]) < 2 * se
