"""Choose ``pca.n_components``, ``knn.k`` and the pixel One-Class SVM on validation data, never on the test set.

For each dataset and normal class 0-9 the official *training* set is split as in
``one_class.py --validation``: 10,000 held-out training images play the test set, the
rest of the normal class trains. Every candidate is scored on those held-out images
without the run pipeline (no plots, one distance computation serves every k), and
``benchmarks/results/tuning_baselines.md`` lists the mean validation AUROC per candidate.

    python benchmarks/tune_baselines.py [--datasets mnist fashion_mnist] [--only ocsvm]

The One-Class SVM candidates are ``nu`` x ``gamma`` as multiples of scikit-learn's "scale"
(1 / (n_pixels * pixel variance of the training images)).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.metrics import roc_auc_score
from sklearn.svm import OneClassSVM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from one_class import CLASSES, DATASETS, REPO, validation_data

from anomaly_bench.data import load_raw, make_splits
from anomaly_bench.models.knn import nearest_distances
from anomaly_bench.models.pca import PCADetector

N_COMPONENTS = [4, 8, 16, 32, 64, 128]
KS = [1, 2, 5, 10, 20, 50]
OCSVM_NU = [0.1, 0.5]
OCSVM_GAMMA_TIMES_SCALE = [0.25, 0.5, 1.0, 2.0]
FAMILIES = ("pca", "knn", "ocsvm")
BLOCK = 1024


def tune(dataset: str, data_folder: Path, families: list[str]) -> pd.DataFrame:
    raw = load_raw(dataset, source="explicit", path=str(validation_data(dataset, data_folder)))
    rows = []
    for normal in CLASSES:
        started = time.perf_counter()
        splits = make_splits(raw, [normal], "rest", val_fraction=0.1, seed=0)
        labels, test = splits.test.labels, splits.test.x
        train_flat, test_flat = splits.train.x.reshape(len(splits.train), -1), test.reshape(len(test), -1)

        def add(setting: str, scores, normal=normal, labels=labels) -> None:
            rows.append(
                {"dataset": dataset, "class": normal, "setting": setting, "auroc": roc_auc_score(labels, scores)}
            )

        if "pca" in families:
            for n in N_COMPONENTS:
                detector = PCADetector("pca", n)
                detector.check(test.shape[1:])
                detector.fit(splits, None)
                add(f"pca n_components={n}", detector.score(test))
        if "knn" in families:
            distances, _ = nearest_distances(test_flat, train_flat, max(KS), BLOCK)
            for k in KS:
                add(f"knn k={k}", distances[:, :k].mean(axis=1))
        if "ocsvm" in families:
            scale = 1.0 / (train_flat.shape[1] * train_flat.var())
            for nu in OCSVM_NU:
                for times in OCSVM_GAMMA_TIMES_SCALE:
                    svm = OneClassSVM(kernel="rbf", nu=nu, gamma=times * scale).fit(train_flat)
                    add(f"ocsvm nu={nu} gamma={times}*scale", -svm.decision_function(test_flat))
        print(f"{dataset} class {normal}: {time.perf_counter() - started:.0f} s", flush=True)
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--data", type=Path, default=REPO / "outputs" / "one_class" / "validation" / "data")
    parser.add_argument("--only", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="model families to tune")
    args = parser.parse_args()
    results = pd.concat([tune(d, args.data, args.only) for d in args.datasets])
    table = results.pivot_table(index="setting", columns="dataset", values="auroc", aggfunc="mean", sort=False) * 100
    subset = args.only != list(FAMILIES)
    command = "python benchmarks/tune_baselines.py" + (f" --only {' '.join(args.only)}" if subset else "")
    lines = [
        "# Validation AUROC of baseline settings",
        "",
        "Mean over normal classes 0-9 of the AUROC (%) on 10,000 images held out from the official training set",
        f"(never the test set). Reproduce: `{command}`.",
        "",
        "| setting | " + " | ".join(table.columns) + " |",
        "|---|" + "---|" * len(table.columns),
    ]
    lines += [f"| {s} | " + " | ".join(f"{v:.2f}" for v in row) + " |" for s, row in table.iterrows()]
    target = REPO / "benchmarks" / "results" / f"tuning_{'_'.join(args.only) if subset else 'baselines'}.md"
    target.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
