"""The one-class protocol in one command: every class 0-9 normal in turn, AUROC on the test set.

For each model this runs one ``anomaly-bench -m`` sweep over the ten classes (and the given
seeds) into a fixed folder, ``<runs>/<dataset>/<label>/``, then writes
``benchmarks/results/one_class_<dataset>.md``: a row per model with per-class AUROC %, the
mean (± std over seeds), the time per class, and the published rows of
``benchmarks/published.csv`` beside them. Reruns skip finished jobs (``resume=true``), so
adding a model or a seed only runs what is missing; ``--table-only`` just rebuilds the table.

``--validation`` runs the same protocol with the official test set replaced by 10,000 images
held out from the official *training* set (normal class vs the other nine): the place to
choose hyperparameters, so the test AUROC in the real table never steers a setting.

``--models all`` is the whole zoo: every model in ``conf/model/`` with its defaults, except the
supervised ``cnn_classifier`` (it trains on labelled anomalies, which the one-class protocol
does not have), and AnoGAN on a budget (10 epochs, its latent search on a stratified 1,000 of
the test images per class; the full test set costs about 10 minutes of search per class).

Any class-labelled dataset works (``--dataset folder --path ROOT`` with ``--classes trouser bag ...``,
the folder names; default classes 0-9); its columns are the class names recorded in each run's
metrics.json. ``--dataset cifar10`` reads CIFAR-10 as JPEG class folders (``train/<class>/``,
``test/<class>/``) at ``--path`` or ``$ANOMALY_BENCH_DATA/cifar10`` through ``dataset=folder``;
its columns are the ten class names, and a class without a finished run stays an empty cell
(listed under the table), so the table can be built over several sittings.

A name in ``--models`` that is an experiment preset (``conf/experiment/<name>.yaml``, e.g.
``natural_images``) runs that preset, with its own model and trainer settings, over the classes.

Examples:
    python benchmarks/one_class.py --models all                  # both datasets, every model
    python benchmarks/one_class.py --dataset folder --path ~/data/fashion_png --classes t-shirt trouser bag --models pca knn
    python benchmarks/one_class.py --dataset mnist --models pca knn
    python benchmarks/one_class.py --dataset fashion_mnist --models knn --seeds 0 1 2
    python benchmarks/one_class.py --dataset mnist --models knn --label knn_encoder -- model.features=encoder
    python benchmarks/one_class.py --dataset mnist --models pca --validation -- model.n_components=16
      (a row named "pca-n_components_16")
    python benchmarks/one_class.py --dataset cifar10 --models knn pca natural_images
    python benchmarks/one_class.py --dataset cifar10 --models natural_images --classes airplane cat
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import sys
from pathlib import Path

import benchmark_sweeps  # benchmarks/ is on sys.path when a script here runs (and in pytest)
import numpy as np
import pandas as pd
from benchmark_sweeps import REPO, fmt

from anomaly_bench.compare.table import class_label, per_class_table

PUBLISHED = REPO / "benchmarks" / "published.csv"
DEFAULT_DATASETS = ("mnist", "fashion_mnist")
DATASETS = tuple(sorted(p.stem for p in (REPO / "conf" / "dataset").glob("*.yaml")))
# "--models all" runs these models as a labelled variant (the overrides are in the row name).
BUDGET_VARIANTS = {
    "anogan": (
        "anogan-10_epochs-1000_test_images",
        ["trainer.epochs=10", "trainer.batch_size=64", "dataset.max_test=1000", "threshold=fixed"],
    ),
}
VALIDATION_TEST_SIZE = 10_000
# Experiment presets that "--models all" adds for a dataset (rows beside the zoo's).
DATASET_PRESETS = {"cifar10": ("natural_images",)}
# Datasets benchmarked from JPEG/PNG class folders (dataset=folder): the folder under $ANOMALY_BENCH_DATA
# that holds them, and the class names in index order (the table's columns, published.csv's 0-9).
FOLDER_DATASETS = {
    "cifar10": (
        "cifar10",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog="Arguments after -- are passed to anomaly-bench as overrides."
    )
    parser.add_argument("--dataset", nargs="+", choices=DATASETS, default=list(DEFAULT_DATASETS))
    parser.add_argument("--path", help="dataset.path (a folder of class subfolders, an .npz, CIFAR-10 batches)")
    parser.add_argument("--classes", nargs="+", help="the normal classes to sweep, by index or name (default 0-9)")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["pca", "knn"],
        help="model config names (conf/model/), or 'all' for the whole zoo",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument(
        "--label",
        help="row name / folder for a variant (one model only); default: the model "
        "name followed by the extra overrides, e.g. knn-k_20",
    )
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "one_class", help="where the sweeps land")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results", help="where tables go")
    parser.add_argument(
        "--validation",
        action="store_true",
        help="score held-out training images instead of the test set (for choosing settings)",
    )
    parser.add_argument("--table-only", action="store_true", help="rebuild the table from existing runs")
    args, extra = parser.parse_known_args(argv)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.label and (len(args.models) != 1 or args.models == ["all"]):
        parser.error("--label names the variant of exactly one model")
    if "all" in args.models and (len(args.models) > 1 or extra):
        parser.error("--models all runs every model with its defaults; it takes no other models or overrides")
    if args.validation and set(args.dataset) - set(DEFAULT_DATASETS):
        parser.error(f"--validation holds out training images of {' and '.join(DEFAULT_DATASETS)} only")
    args.overrides = extra
    return args


def validation_data(dataset: str, folder: Path) -> Path:
    """An .npz whose 'test' images are held out from the official training set (never the test set)."""
    from anomaly_bench.data import load_raw
    from anomaly_bench.data.split import stratified_subsample

    target = folder / f"{dataset}_train_holdout.npz"
    if not target.exists():
        raw = load_raw(dataset)
        held = np.zeros(len(raw.y_train), dtype=bool)
        held[stratified_subsample(raw.y_train, VALIDATION_TEST_SIZE, np.random.default_rng(0))] = True
        folder.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            target,
            x_train=raw.x_train[~held],
            y_train=raw.y_train[~held],
            x_test=raw.x_train[held],
            y_test=raw.y_train[held],
        )
    return target


def variant_label(model: str, overrides: list[str]) -> str:
    """``knn`` + ``model.k=20`` -> ``knn-k_20``: a folder name Hydra's override grammar accepts."""
    if not overrides:
        return model
    text = ",".join(o.removeprefix("model.") for o in overrides)
    return f"{model}-" + re.sub(r"[^A-Za-z0-9_.,-]+", "_", text)


def is_preset(name: str) -> bool:
    """True for an experiment preset (conf/experiment/<name>.yaml) rather than a model config."""
    return (REPO / "conf" / "experiment" / f"{name}.yaml").is_file() and not (
        REPO / "conf" / "model" / f"{name}.yaml"
    ).is_file()


def folder_dataset_path(dataset: str, path: str | None) -> str:
    """Where a FOLDER_DATASETS dataset's class folders are: --path, else $ANOMALY_BENCH_DATA/<folder>."""
    if path:
        return path
    root = os.environ.get("ANOMALY_BENCH_DATA")
    if not root:
        sys.exit(f"--dataset {dataset}: give --path <class folders> or set ANOMALY_BENCH_DATA (its {dataset}/)")
    return str(Path(root) / FOLDER_DATASETS[dataset][0])


def expected_classes(dataset: str, args: argparse.Namespace) -> list[str] | None:
    """The table's columns when they are known before any run finishes (so missing ones show)."""
    if dataset in FOLDER_DATASETS:
        names = FOLDER_DATASETS[dataset][1]
        return [names[int(c)] if str(c).isdigit() else str(c) for c in (args.classes or names)]
    return [str(c) for c in args.classes] if args.classes else None


@functools.cache
def supervised_models() -> tuple[str, ...]:
    """Model configs whose detector class says ``supervision = "supervised"``: left out of "--models all",
    since they train on labelled anomalies, which the one-class protocol has none of."""
    from hydra import compose, initialize_config_dir

    found = []
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        for path in sorted((REPO / "conf" / "model").glob("*.yaml")):
            module, _, name = compose("config", overrides=[f"model={path.stem}"]).model._target_.rpartition(".")
            if getattr(getattr(importlib.import_module(module), name), "supervision", None) == "supervised":
                found.append(path.stem)
    return tuple(found)


def planned_runs(args: argparse.Namespace, dataset: str = "") -> list[tuple[str, str, list[str]]]:
    """(model, row label, overrides) for each sweep the command line asks for on ``dataset``."""
    if args.models == ["all"]:
        supervised = supervised_models()
        names = sorted(p.stem for p in (REPO / "conf" / "model").glob("*.yaml") if p.stem not in supervised)
        names += DATASET_PRESETS.get(dataset, ())
        return [(name, *BUDGET_VARIANTS.get(name, (name, []))) for name in names]
    return [(model, args.label or variant_label(model, args.overrides), args.overrides) for model in args.models]


def run_sweep(model: str, label: str, overrides: list[str], dataset: str, args: argparse.Namespace, root: Path) -> None:
    """One ``anomaly-bench -m`` sweep: ten classes x seeds for one model (or preset), into ``root/label``."""
    classes = args.classes
    if is_preset(model):  # the preset takes the experiment slot, so the protocol's sweep is spelled out
        command = [f"experiment={model}", "dataset.anomaly_classes=rest"]
        classes = classes or list(range(10))
    else:
        command = ["experiment=one_class_protocol", f"model={model}"]
    command += [
        f"dataset={'folder' if dataset in FOLDER_DATASETS else dataset}",
        "trainer.seed=" + ",".join(map(str, args.seeds)),
        *overrides,
    ]
    if dataset in FOLDER_DATASETS:
        command.append(f"dataset.path={folder_dataset_path(dataset, args.path)}")
    elif args.path:
        command.append(f"dataset.path={args.path}")
    if classes:
        command.append("dataset.normal_classes=" + ",".join(f"[{c}]" for c in classes))
    if args.validation:
        command += [f"dataset.path={validation_data(dataset, root.parent / 'data')}", "dataset.source=explicit"]
    benchmark_sweeps.run_sweep(command, root / label)


def read_runs(root: Path) -> tuple[pd.DataFrame, list]:
    """One row per run folder below ``root`` (via anomaly-bench-compare's loader): label = sweep folder."""
    from anomaly_bench.compare.discover import discover
    from anomaly_bench.compare.load import load_run

    records = [load_run(path) for path in discover([str(root)]).runs]
    runs = pd.DataFrame(
        {
            "label": [r.path.relative_to(root).parts[0] for r in records],
            "status": [r.status for r in records],
            "seed": [r.metrics.get("seed") for r in records],
            "auroc": [r.metrics.get("auroc") if r.ok else np.nan for r in records],
            "seconds": [r.metrics.get("timings.total") if r.ok else np.nan for r in records],
            "cls": [class_label(r) if r.ok else "" for r in records],
        }
    )
    return runs.astype({"auroc": float, "seconds": float}), records


def class_columns(runs: pd.DataFrame, records: list, expected: list[str] | None = None) -> list[str]:
    """The normal classes: ``expected`` when known, else those of the completed runs in class-index
    order (digits numerically, then names)."""
    if expected:
        return expected
    order = {}
    for cls, record in zip(runs["cls"], records):
        if record.ok:
            index = record.metrics.get("normal_classes")
            order[cls] = (
                (0, int(index[0]), cls)
                if isinstance(index, list) and len(index) == 1
                else (0, int(cls), cls)
                if cls.isdigit()
                else (1, 0, cls)
            )
    return sorted(order, key=order.get)


def model_rows(runs: pd.DataFrame, records: list, classes: list[str]) -> pd.DataFrame:
    """Per label: AUROC % per class (mean over seeds) and their mean, std over seeds, seconds/class."""
    columns = [*classes, "mean", "std_seeds", "seeds", "s_per_class", "not_completed"]
    if not (runs.status == "completed").any():
        return pd.DataFrame(columns=["method", *columns])
    table = per_class_table(runs, records, ["label"], "auroc").set_index("label")
    done = runs[runs.status == "completed"]
    per_seed = done.groupby(["label", "seed"]).agg(mean=("auroc", "mean"), classes=("cls", "nunique"))
    complete = per_seed[per_seed.classes == len(classes)]["mean"] * 100
    table["std_seeds"] = complete.groupby("label").std(ddof=1)
    table["seeds"] = done.groupby("label").seed.nunique()
    table["s_per_class"] = done.groupby("label").seconds.mean()
    table["not_completed"] = runs[runs.status != "completed"].groupby("label").size()
    table = table.reindex(columns=columns)
    table.loc[table[classes].isna().any(axis=1), "mean"] = np.nan  # a partial row has no mean
    return table.fillna({"not_completed": 0}).reset_index(names="method")


def member_rows(runs: pd.DataFrame, records: list, classes: list[str]) -> pd.DataFrame:
    """For ensemble runs: each member's own AUROC % on the same runs (from member_scores.csv).

    Shows what the combination adds over its members without training them again.
    """
    from sklearn.metrics import roc_auc_score

    found = []
    for (label, status, seed, cls), record in zip(
        runs[["label", "status", "seed", "cls"]].itertuples(index=False), records
    ):
        path = record.path / "member_scores.csv"
        if status != "completed" or not path.exists():
            continue
        scores = pd.read_csv(path)
        for column in (c for c in scores.columns if c.startswith("z_")):
            found.append(
                {
                    "method": f"{label}: {column[2:]} alone",
                    "cls": cls,
                    "seed": seed,
                    "auroc": 100 * roc_auc_score(scores["label"], scores[column]),
                }
            )
    if not found:
        return pd.DataFrame()
    frame = pd.DataFrame(found)
    table = frame.pivot_table(index="method", columns="cls", values="auroc", aggfunc="mean")
    table = table.reindex(columns=classes)
    table["mean"] = table.mean(axis=1, skipna=False)
    table["seeds"] = frame.groupby("method").seed.nunique()
    table["note"] = " (a member of that ensemble, scored in the same runs)"
    return table.reset_index()


def missing_cells(ours: pd.DataFrame, classes: list[str]) -> list[str]:
    """One line per row of ours with classes that have no finished run yet."""
    lines = []
    for row in ours.to_dict("records"):
        absent = [c for c in classes if pd.isna(row.get(c))]
        if absent:
            lines.append(f"- **{row['method']}**: {', '.join(absent)}")
    return lines


def published_column(dataset: str, cls: str) -> str:
    """published.csv's column for a class: its index 0-9, which for a FOLDER_DATASETS dataset is
    the position of the class name."""
    names = FOLDER_DATASETS.get(dataset, ("", ()))[1]
    return str(names.index(cls)) if cls in names else cls


def markdown_table(ours: pd.DataFrame, published: pd.DataFrame, classes: list[str], dataset: str = "") -> list[str]:
    head = ["method", *classes, "mean", "± std (seeds)", "seeds", "s / class", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ours.sort_values("mean", ascending=False).to_dict("records"):
        mean = fmt(row["mean"])
        note = f" ({int(row['not_completed'])} runs not completed)" if row["not_completed"] else ""
        note += row.get("note") if isinstance(row.get("note"), str) else ""
        cells = [
            f"**{row['method']}**",
            *(fmt(row[c]) for c in classes),
            f"**{mean}**" if mean else "",
            fmt(row.get("std_seeds"), 2),
            fmt(row["seeds"], 0),
            fmt(row.get("s_per_class"), 0),
            "this benchmark" + note,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    for row in published.to_dict("records"):
        cells = [
            row["method"],
            *(fmt(row.get(published_column(dataset, c), np.nan)) for c in classes),
            fmt(row["mean"]),
            "",
            "",
            "",
            row["source"],
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def write_table(dataset: str, args: argparse.Namespace, root: Path) -> Path:
    runs, records = read_runs(root)
    classes = class_columns(runs, records, expected_classes(dataset, args))
    ours = pd.concat([model_rows(runs, records, classes), member_rows(runs, records, classes)], ignore_index=True)
    ours["not_completed"] = ours["not_completed"].fillna(0)
    published = pd.read_csv(PUBLISHED)
    published = published[published.dataset == dataset] if not args.validation else published.iloc[0:0]
    info = benchmark_sweeps.read_benchmark_files(root)
    loads = [v for i in info for v in (i["load_average_before"], i["load_average_after"])]
    what = (
        "held-out training images (model selection; not comparable with published test-set figures)"
        if args.validation
        else "the official test set"
        if dataset in DEFAULT_DATASETS
        else "the official test set (the test/ class folders)"
        if dataset in FOLDER_DATASETS
        else "the test set (each run's metrics.json -> test_split says which)"
    )
    suffix = "_validation" if args.validation else ""
    lines = [
        f"# One-class protocol: {dataset}{' (validation)' if args.validation else ''}",
        "",
        f"Train on the training images of one class (10 % held out as validation), score {what} with that",
        "class normal and every other class anomalous; AUROC in %. Per-class cells are means over seeds; "
        f"`± std` is the std over seeds of the {len(classes)}-class mean.",
        f"`s / class` is the mean wall time of one run (fit + score + plots) on a machine with {os.cpu_count()} CPU cores"
        + (
            f" **shared with other jobs** (1-minute load average {min(loads):.1f}-{max(loads):.1f} while the sweeps ran);"
            " treat the times as upper bounds."
            if loads
            else "."
        ),
        f"Runs: `{root.relative_to(REPO) if root.is_relative_to(REPO) else root}`; published rows: "
        "`benchmarks/published.csv` (empty cells = per-class figures not reproduced here).",
        f"Reproduce: `python benchmarks/one_class.py --dataset {dataset} --models <model...|all>"
        + (f" --path {args.path}" if args.path else "")
        + (f" --classes {' '.join(args.classes)}" if args.classes else "")
        + (" --validation" if args.validation else "")
        + "`"
        + f" (`all`: every model but the supervised {', '.join(supervised_models())}, which train on labelled anomalies;"
        " a row name after the model name lists its overrides).",
        "",
        *markdown_table(ours, published, classes, dataset),
        "",
    ]
    missing = missing_cells(ours, classes)
    if not args.validation:
        done = set(runs.label[runs.status == "completed"])
        everything = parse_args(["--models", "all"])
        missing += [
            f"- **{label}**: every class" for _, label, _ in planned_runs(everything, dataset) if label not in done
        ]
    if missing:
        lines += [
            "Cells still missing (no finished run of that class yet; `--models all` or the model's name runs "
            "them, finished runs are kept):",
            "",
            *missing,
            "",
        ]
    args.results.mkdir(parents=True, exist_ok=True)
    target = args.results / f"one_class_{dataset}{suffix}.md"
    target.write_text("\n".join(lines))
    return target


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for dataset in args.dataset:
        root = (args.runs / ("validation" if args.validation else "test") / dataset).resolve()
        if not args.table_only:
            for model, label, overrides in planned_runs(args, dataset):
                run_sweep(model, label, overrides, dataset, args, root)
        print(f"table: {write_table(dataset, args, root)}")


if __name__ == "__main__":
    main()
