"""Choose the ``ae_ocsvm`` defaults (code layer, code scaling, nu, gamma) on training images only.

As in ``tune_baselines.py``, the official *training* set is split (``one_class.validation_data``):
10,000 held-out training images play the test set, the rest of the normal class trains the
autoencoder (``max_train`` images, the trainer defaults). Per autoencoder code layer the
autoencoder is trained once, and every One-Class SVM setting is scored on the same codes.
Diagnostics per code layer: the k-NN (k=5) AUROC in the standardised code space (how much
the code separates at all, whatever the estimator), and the median distance to the centre
of the normal codes (standardised) of held-out normal vs anomalous images.

Cases: MNIST, each class of ``--classes`` normal vs the rest (seed 0), and the article-002
pair Fashion-MNIST 5 vs 7 (seeds 0, 1, 2). Writes ``benchmarks/results/tuning_ae_ocsvm.md``.

    python benchmarks/tune_ae_ocsvm.py [--max-train 2000] [--classes 0 3 6 9] [--codes linear:2 linear:8 ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

sys.path.insert(0, str(Path(__file__).resolve().parent))
from one_class import CLASSES, REPO, validation_data

from anomaly_bench.run import prepare

FASHION_PAIR = [("fashion_mnist", 5, "[7]", seed) for seed in (0, 1, 2)]
CODES = ["relu:2", "linear:2", "linear:8", "linear:32"]
SCALINGS = ["raw", "standardised"]
NUS = [0.5, 0.1]
GAMMAS = ["scale", 0.01, 0.1, 1.0]


def train_codes(
    dataset: str, normal: int, anomalies: str, seed: int, code: str, max_train: int, data: Path
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes of the normal training images and of the held-out images, with the held-out labels."""
    import keras

    activation, units = code.split(":")
    overrides = [
        "model=ae_ocsvm",
        f"dataset={dataset}",
        f"dataset.normal_classes=[{normal}]",
        f"dataset.anomaly_classes={anomalies}",
        f"dataset.path={validation_data(dataset, data)}",
        "dataset.source=explicit",
        f"dataset.max_train={max_train}",
        "dataset.max_test=null",
        f"trainer.seed={seed}",
        f"model.autoencoder.encoder.3.activation={activation}",
        f"model.autoencoder.encoder.3.units={units}",
    ]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    keras.utils.clear_session(free_memory=True)
    settings, _, detector, _, splits = prepare(cfg)
    detector.autoencoder.fit(splits, settings.trainer)
    encode = detector.autoencoder.encode
    return encode(splits.train.normal.x), encode(splits.test.x), splits.test.labels


def evaluate(train: np.ndarray, test: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Validation AUROC of every SVM setting, plus the diagnostics of this code."""
    scaler = StandardScaler().fit(train)
    z_train, z_test = scaler.transform(train), scaler.transform(test)
    radius = np.linalg.norm(z_test, axis=1)
    distances, _ = NearestNeighbors(n_neighbors=5).fit(z_train).kneighbors(z_test)
    rows = [
        {"setting": "diag: knn k=5 (standardised)", "value": roc_auc_score(labels, distances.mean(axis=1))},
        {"setting": "diag: dead code dims", "value": float(np.sum(train.std(axis=0) == 0))},
        {"setting": "diag: median radius normal", "value": float(np.median(radius[labels == 0]))},
        {"setting": "diag: median radius anomaly", "value": float(np.median(radius[labels == 1]))},
    ]
    for scaling in SCALINGS:
        fit_on, score_on = (train, test) if scaling == "raw" else (z_train, z_test)
        for nu in NUS:
            for gamma in GAMMAS:
                svm = OneClassSVM(kernel="rbf", nu=nu, gamma=gamma).fit(fit_on)
                rows.append(
                    {
                        "setting": f"svm {scaling} nu={nu} gamma={gamma}",
                        "value": roc_auc_score(labels, -svm.decision_function(score_on)),
                    }
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codes", nargs="+", default=CODES, help="activation:units of the code layer")
    parser.add_argument("--classes", nargs="+", type=int, default=CLASSES, help="MNIST normal classes")
    parser.add_argument("--max-train", type=int, default=2000)
    parser.add_argument("--data", type=Path, default=REPO / "outputs" / "one_class" / "validation" / "data")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tuning_ae_ocsvm.md")
    args = parser.parse_args()
    rows = []
    cases = [("mnist", c, "rest", 0) for c in args.classes] + FASHION_PAIR
    for dataset, normal, anomalies, seed in cases:
        for code in args.codes:
            started = time.perf_counter()
            train, test, labels = train_codes(dataset, normal, anomalies, seed, code, args.max_train, args.data)
            case = "mnist (seed 0)" if dataset == "mnist" else "fashion 5 vs 7 (seeds 0-2)"
            for row in evaluate(train, test, labels):
                rows.append({"case": case, "normal": normal, "seed": seed, "code": code, **row})
            print(f"{dataset} {normal} seed {seed} {code}: {time.perf_counter() - started:.0f} s", flush=True)
            pd.DataFrame(rows).to_csv(args.out.with_suffix(".csv"), index=False)
    results = pd.DataFrame(rows)
    mean = results.pivot_table(index="setting", columns=["case", "code"], values="value", aggfunc="mean", sort=False)
    worst = results.pivot_table(index="setting", columns=["case", "code"], values="value", aggfunc="min", sort=False)
    lines = [
        "# Validation AUROC of ae_ocsvm settings",
        "",
        f"Held-out *training* images (never the test set); autoencoder on {args.max_train} normal training "
        f"images, trainer defaults; MNIST normal classes {' '.join(map(str, args.classes))}. "
        "Columns: case / code layer (activation:units). `diag:` rows describe the code; radius = distance "
        "to the centre of the standardised normal training codes.",
        "Reproduce: `python benchmarks/tune_ae_ocsvm.py`.",
        "",
    ]
    for title, table in [("Mean", mean), ("Worst case (min over classes / seeds)", worst)]:
        columns = [f"{case} {code}" for case, code in table.columns]
        lines += [f"## {title}", "", "| setting | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [f"| {s} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for s, row in table.iterrows()]
        lines.append("")
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
