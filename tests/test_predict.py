"""``anomaly-bench-predict``: PNG files, folders, globs, .npz and IDX inputs, images of another size
and colour, unreadable files, and the bad-input exit codes. A few cases run the command in a
subprocess as a user does; the others call its ``main`` in this process (no second start-up)."""

import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, needs_fashion, needs_mnist
from image_data import fashion_folder
from PIL import Image
from zoo_runs import SMALL

from anomaly_bench import predict
from anomaly_bench.data import load_raw
from anomaly_bench.run import run


def predict_cli(cwd, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.run(
        [sys.executable, "-m", "anomaly_bench.predict", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def predict_main(capsys, *args) -> tuple[int, str, str]:
    """The command's exit code, stdout and stderr, run in this process."""
    capsys.readouterr()
    code = predict.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def knn_run(shared_run):
    """A tiny completed knn run (the one test_load_detector loads), its scores.csv and its test
    images as uint8 N x 28 x 28."""
    folder, _ = shared_run(["model=knn", *SMALL])
    expected = pd.read_csv(folder / "scores.csv")
    images = load_raw("mnist").x_test[expected["index"].to_numpy()]
    return folder, expected, images.reshape(len(images), 28, 28)


def save_pngs(images, folder, prefix="img") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        paths.append(folder / f"{prefix}{i:03d}.png")
        Image.fromarray(image).save(paths[-1])
    return paths


def check_scores(predicted: pd.DataFrame, expected: pd.DataFrame) -> None:
    np.testing.assert_allclose(predicted["score"], expected["score"], rtol=1e-6, atol=1e-9)
    assert list(predicted["flagged"]) == list(expected["flagged"])
    assert {"source", "index", "score", "flagged", "threshold", "rule"} <= set(predicted.columns)


@needs_mnist
def test_png_files_folders_and_globs_give_the_runs_scores_and_flags(tmp_path, knn_run, capsys):
    run_dir, expected, images = knn_run
    save_pngs(images[:20], tmp_path / "pngs" / "a")
    save_pngs(images[20:30], tmp_path / "pngs" / "b" / "deeper", prefix="more")
    result = predict_cli(tmp_path, run_dir, tmp_path / "pngs", "--out", tmp_path / "out", "--batch-size", "7")
    assert result.returncode == 0, result.stderr[-2000:]
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert (
        len(predicted) == 30
        and (predicted["threshold"] == json.loads((run_dir / "metrics.json").read_text())["threshold"]).all()
        and (predicted["rule"] == "val_mean_std").all()
    )
    check_scores(predicted, expected[:30])
    assert "scored 7 images" in result.stdout and "scored 30 images" in result.stdout  # progress per batch
    assert (tmp_path / "out" / "most_anomalous.png").is_file()

    code, _, err = predict_main(capsys, run_dir, str(tmp_path / "pngs" / "**" / "more00*.png"), "--out", tmp_path / "g")
    assert code == 0, err[-2000:]
    check_scores(pd.read_csv(tmp_path / "g" / "predictions.csv"), expected[20:30])


@needs_mnist
def test_npz_and_idx_inputs_are_scored_by_index(tmp_path, knn_run, capsys):
    run_dir, expected, images = knn_run
    np.savez(tmp_path / "new.npz", x_test=images[:12])
    idx = tmp_path / "idx"
    idx.mkdir()
    header = bytes([0, 0, 8, 3]) + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    with gzip.open(idx / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(header + images.tobytes())
    code, _, err = predict_main(capsys, run_dir, tmp_path / "new.npz", idx, "--out", tmp_path / "out")
    assert code == 0, err[-2000:]
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert list(predicted["index"]) == list(range(12)) + list(range(len(images)))
    check_scores(predicted[:12], expected[:12])
    check_scores(predicted[12:].reset_index(drop=True), expected)


@needs_mnist
def test_float_arrays_and_16_bit_pngs_are_read_as_training_data_is(tmp_path, knn_run, capsys):
    """Float arrays in [0, 255] or [0, 1] and 16-bit grey PNGs mean for predict what they mean for training data."""
    run_dir, expected, images = knn_run
    np.savez(tmp_path / "pixels.npz", x_test=images[:6].astype(np.float32))
    np.savez(tmp_path / "unit.npz", x_test=images[:6] / 255.0)
    sixteen = tmp_path / "sixteen"
    sixteen.mkdir()
    for i, image in enumerate(images[:6]):
        Image.fromarray(image.astype(np.uint16) * 257).save(sixteen / f"{i}.png")
    code, _, err = predict_main(
        capsys, run_dir, tmp_path / "pixels.npz", tmp_path / "unit.npz", sixteen, "--out", tmp_path / "out"
    )
    assert code == 0, err[-2000:]
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    for start in (0, 6, 12):
        check_scores(predicted[start : start + 6].reset_index(drop=True), expected[:6])


@needs_mnist
def test_other_sizes_and_colours_are_conformed_and_unreadable_files_are_listed(tmp_path, knn_run, capsys):
    run_dir, expected, images = knn_run
    folder = tmp_path / "mixed"
    save_pngs(images[:5], folder)
    big = np.asarray(Image.fromarray(images[0]).resize((56, 56), Image.Resampling.NEAREST).convert("RGB"))
    Image.fromarray(big).save(folder / "rgb_56x56.png")
    Image.fromarray(images[1]).convert("RGBA").save(folder / "rgba.png")
    Image.fromarray(images[2]).save(folder / "photo.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"not an image at all")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    code, _, err = predict_main(capsys, run_dir, folder, "--out", tmp_path / "out")
    assert code == 1, err[-2000:]
    assert "broken.png" in err and "unreadable" in err
    unreadable = pd.read_csv(tmp_path / "out" / "unreadable.csv")
    assert [os.path.basename(s) for s in unreadable["source"]] == ["broken.png"]
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("source")
    assert len(predicted) == 8  # 5 PNG + RGB + RGBA + JPEG; the .txt is not looked at
    by_name = {os.path.basename(s): row for s, row in predicted.iterrows()}
    assert by_name["rgba.png"]["score"] == pytest.approx(expected["score"][1], rel=1e-6)
    # A 2x nearest-neighbour enlargement shrinks back to nearly the same image.
    assert by_name["rgb_56x56.png"]["score"] == pytest.approx(expected["score"][0], rel=0.2)
    assert by_name["photo.jpg"]["score"] == pytest.approx(expected["score"][2], rel=0.2)


@needs_mnist
def test_default_output_folder_is_new_and_outside_the_run(tmp_path, knn_run, capsys, monkeypatch):
    run_dir, _, images = knn_run
    save_pngs(images[:3], tmp_path / "few")
    before = sorted(p.name for p in run_dir.rglob("*"))
    monkeypatch.chdir(tmp_path)
    code, _, err = predict_main(capsys, run_dir, tmp_path / "few")
    assert code == 0, err[-2000:]
    made = list((tmp_path / "outputs" / "predictions").glob("*/*/predictions.csv"))
    assert len(made) == 1 and run_dir.name in made[0].parent.name
    assert sorted(p.name for p in run_dir.rglob("*")) == before  # the run folder is never modified


@needs_mnist
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, knn_run, capsys):
    run_dir, _, images = knn_run
    save_pngs(images[:2], tmp_path / "two")
    (tmp_path / "empty").mkdir()
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "metrics.json").write_text(json.dumps({"status": "running"}))
    unknown = tmp_path / "unknown_model"
    unknown.mkdir()
    (unknown / "metrics.json").write_text((run_dir / "metrics.json").read_text())
    facts = json.loads((run_dir / "detector.json").read_text())
    facts["model"]["_target_"] = "anomaly_bench.models.nope.NoSuchDetector"
    (unknown / "detector.json").write_text(json.dumps(facts))
    cases = [
        ((unfinished, tmp_path / "two"), "status is 'running', not 'completed'"),
        ((tmp_path / "nowhere", tmp_path / "two"), "is not a folder"),
        ((unknown, tmp_path / "two"), "NoSuchDetector"),
        ((run_dir, tmp_path / "empty"), "no images found"),
        ((run_dir, tmp_path / "missing.png"), "does not exist"),
        ((run_dir, str(tmp_path / "*.nothing")), "matches no file"),
        ((run_dir, tmp_path / "two", "--out", run_dir / "inside"), "a run folder"),
    ]
    for i, (args, expected) in enumerate(cases):
        out = () if "--out" in args else ("--out", tmp_path / "out")
        if i == 0:  # the command as a user runs it: exit status and stderr of its own process
            result = predict_cli(tmp_path, *args, *out)
            code, err = result.returncode, result.stderr
        else:
            code, _, err = predict_main(capsys, *args, *out)
        assert code == 2, (args, err[-2000:])
        errors = [line for line in err.splitlines() if line.startswith("anomaly-bench-predict: error:")]
        assert len(errors) == 1 and expected in errors[0], (args, err[-2000:])
        assert "Traceback" not in err
        assert not (tmp_path / "out").exists() and not (run_dir / "inside").exists()


@needs_fashion
def test_a_folder_run_on_32x32_rgb_pngs_scores_48x48_images(tmp_path, capsys):
    """dataset=folder: the run's image shape comes from its files, and new images of another size
    are brought to it as the training images were (Pillow resize), so the run's detector scores them."""
    root = tmp_path / "pngs"
    fashion_folder(root, load_raw("fashion_mnist", source="env"), 20, 10)
    run_dir = tmp_path / "run"
    run(
        compose_config(
            [
                "dataset=folder",
                f"dataset.path={root}",
                "dataset.normal_classes=[trouser]",
                "dataset.anomaly_classes=[bag]",
                "model=knn",
                "model.k=3",
            ]
        ),
        run_dir,
    )
    facts = json.loads((run_dir / "detector.json").read_text())["preprocessing"]
    assert facts["image_shape"] == [32, 32, 3] and facts["dataset"] == {"image_size": None, "channels": None}
    expected = pd.read_csv(run_dir / "scores.csv")
    x_test = load_raw("folder", path=str(root)).x_test[expected["index"].to_numpy()]
    same = save_pngs(x_test, tmp_path / "same")
    big = tmp_path / "big"
    big.mkdir()
    for path in same:
        Image.open(path).resize((48, 48), Image.Resampling.BILINEAR).save(big / path.name)
    code, out, err = predict_main(capsys, run_dir, tmp_path / "same", big, "--out", tmp_path / "out")
    assert code == 0, err[-2000:]
    assert "images 32x32x3" in out + err
    predicted = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert len(predicted) == 2 * len(expected)
    check_scores(predicted[: len(expected)].reset_index(drop=True), expected)  # the run's own size: exact
    resized = predicted[len(expected) :]
    assert {os.path.basename(s) for s in resized["source"]} == {p.name for p in same}
    labels = expected["label"].to_numpy()
    scores = resized["score"].to_numpy()
    # Up- and down-sampling blurs a little; the anomalies (bags) still score above the normal trousers.
    assert scores[labels == 1].min() > np.median(scores[labels == 0])
