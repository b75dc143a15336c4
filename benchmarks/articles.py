"""The five articles' claims beside what their presets measure, in one command.

Runs every article preset (``conf/experiment/article*.yaml``: article 000's five autoencoders,
001, 002, 003 and 003 with the article's 20 % validation split, 004) as one resumable
``anomaly-bench -m`` sweep per preset into ``<runs>/<label>/``, then writes
``benchmarks/results/articles.md``: per article the claim quoted from its text (with where it
stands and a translation), our figure (mean ± std over seeds), a verdict and the deviations of
the preset from the article's code. Reruns skip finished runs (``resume=true``); ``--table-only``
just rebuilds the report from the run folders.

Verdicts: a claimed count ("5 of 10 anomalies missed") is *reproduced* when our mean rate lies in
the 95 % Clopper-Pearson interval of the article's count (the article's sample is small, so its
rate is uncertain); a claimed comparison is reproduced when it holds for the means over seeds
(article 002's, which its author expects from every training of the autoencoder, for every seed);
*not comparable* when the article gives no number or measures something the preset does not.

Examples:
    python benchmarks/articles.py                       # everything, seeds 0 1 2 (AnoGAN: seed 0)
    python benchmarks/articles.py --only article003_digits1to9_vs_0
    python benchmarks/articles.py --table-only
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import benchmark_sweeps  # benchmarks/ is on sys.path when a script here runs (and in pytest)
import numpy as np
import pandas as pd
from benchmark_sweeps import REPO, fmt
from scipy.stats import beta

REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE, NOT_RUN = "reproduced", "not reproduced", "not comparable", "not run"


@dataclass(frozen=True)
class Preset:
    """One sweep of the report: a preset, extra overrides, and whether it is too costly for every seed."""

    label: str
    experiment: str
    overrides: tuple[str, ...] = ()
    expensive: bool = False

    def command(self, seeds: list[int]) -> list[str]:
        return [f"experiment={self.experiment}", "trainer.seed=" + ",".join(map(str, seeds)), *self.overrides]


AE_KINDS = ("undercomplete_ae", "sparse_ae", "deep_ae", "conv_ae", "denoising_ae")
A001, A002, A003, A004 = (
    "article001_cnn_vs_cae",
    "article002_ae_ocsvm_vs_ocsvm",
    "article003_digits1to9_vs_0",
    "article004_anogan",
)
A003_SPLIT = f"{A003}-val_fraction_0.2"
PRESETS = (
    *(Preset(f"article000_{kind}", f"article000_{kind}") for kind in AE_KINDS),
    Preset(A001, A001),
    Preset(A002, A002),
    Preset(A003, A003),
    Preset(A003_SPLIT, A003, ("dataset.val_fraction=0.2",)),
    Preset(A004, A004, expensive=True),
)
# Wall time the whole report is meant to fit in on 2 shared CPU cores (why expensive presets get fewer seeds).
TIME_BUDGET_MIN = 80


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--expensive-seeds",
        type=int,
        default=1,
        help="how many of --seeds the expensive presets (AnoGAN) run (default 1)",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[p.label for p in PRESETS],
        help="run only these presets (the report still covers every preset)",
    )
    parser.add_argument("--runs", type=Path, default=REPO / "outputs" / "articles", help="where the sweeps land")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "articles.md")
    parser.add_argument("--table-only", action="store_true", help="rebuild the report from existing runs")
    args = parser.parse_args(argv)
    if args.expensive_seeds < 1:
        parser.error(f"--expensive-seeds={args.expensive_seeds} must be at least 1")
    return args


def planned_runs(args: argparse.Namespace) -> list[tuple[Preset, list[int]]]:
    """Each sweep the command line asks for, with the seeds it runs."""
    chosen = [p for p in PRESETS if not args.only or p.label in args.only]
    return [(p, args.seeds[: args.expensive_seeds] if p.expensive else list(args.seeds)) for p in chosen]


# ---------------------------------------------------------------------------------------------
# Reading the run folders


def last_val_loss(folder: Path) -> float:
    """The final validation loss (the article's own training loss on held-out normal images)."""
    path = folder / "history.csv"
    if not path.exists():
        return np.nan
    history = pd.read_csv(path)
    return float(history["val_loss"].iloc[-1]) if "val_loss" in history and len(history) else np.nan


def best_accuracy(folder: Path) -> float:
    """Accuracy at the best threshold on the test scores: an oracle, like a threshold read off a test histogram."""
    scores = pd.read_csv(folder / "scores.csv").sort_values("score")
    labels = scores["label"].to_numpy()
    # Cut after the i-th lowest score (i = 0..n): normal below the cut are right, anomalies above it are right.
    normals_below = np.r_[0, np.cumsum(labels == 0)]
    anomalies_above = labels.sum() - np.r_[0, np.cumsum(labels == 1)]
    return float((normals_below + anomalies_above).max() / len(labels))


def read_runs(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(completed runs, runs that did not complete) below ``root/<preset label>/``.

    A completed run's row holds its label, model, seed, metrics and config (dotted keys).
    """
    from anomaly_bench.compare.discover import discover
    from anomaly_bench.compare.load import load_run

    done, problems = [], []
    for preset in PRESETS:
        folder = root / preset.label
        if not folder.is_dir():
            continue
        for path in discover([str(folder)]).runs:
            record = load_run(path)
            if not record.ok:
                problems.append(
                    {"label": preset.label, "folder": str(path), "status": record.status, "problem": record.problem}
                )
                continue
            m = record.metrics
            cm = np.asarray(m.get("confusion_matrix", [[0, 0], [0, 0]]), dtype=float)
            row = {
                "label": preset.label,
                "model": record.config.get("model.name", m.get("model")),
                "seed": m.get("seed"),
                "path": record.path,
                "config": record.config,
                "auroc": m.get("auroc"),
                "accuracy": m.get("accuracy"),
                "recall": m.get("recall"),
                "normal_flagged": cm[0, 1] / cm[0].sum() if cm[0].sum() else np.nan,
                "n_test": m.get("n_test"),
                "n_test_anomalies": m.get("n_test_anomalies"),
                "n_train_anomalies": m.get("n_train_anomalies"),
                "threshold_rule": m.get("threshold_rule"),
                "threshold": m.get("threshold"),
                "seconds": m.get("timings.total"),
                "val_loss": last_val_loss(record.path),
                "started_at": m.get("started_at"),
                "code_dims_constant": m.get("detector.code_dims_constant", np.nan),
            }
            row.update({f"flagged_{c}": m.get(f"flagged_rate_by_class.{c}", np.nan) for c in range(10)})
            done.append(row)
    columns = [
        "label",
        "model",
        "seed",
        "path",
        "config",
        "auroc",
        "accuracy",
        "recall",
        "normal_flagged",
        "n_test",
        "n_test_anomalies",
        "n_train_anomalies",
        "threshold_rule",
        "threshold",
        "seconds",
        "val_loss",
        "started_at",
        "code_dims_constant",
        *(f"flagged_{c}" for c in range(10)),
    ]
    return (
        pd.DataFrame(done, columns=columns).sort_values(["label", "model", "seed"], ignore_index=True),
        pd.DataFrame(problems, columns=["label", "folder", "status", "problem"]),
    )


# ---------------------------------------------------------------------------------------------
# Figures and verdicts


def per_seed(runs: pd.DataFrame, label: str, column: str, model: str | None = None) -> pd.Series:
    """One value per seed for a preset (and model), sorted by seed."""
    rows = runs[(runs.label == label) & ((runs.model == model) if model else True)]
    return rows.set_index("seed")[column].astype(float).sort_index()


def spread(values: pd.Series, scale: float = 100.0, digits: int = 1, unit: str = " %") -> str:
    """``42.4 ± 1.9 %`` (std over seeds, n - 1) or ``42.4 %`` for one seed; the seeds in brackets."""
    if values.empty:
        return "no completed run"
    seeds = ", ".join(str(int(s)) for s in values.index)
    text = fmt(values.mean() * scale, digits)
    if len(values) > 1:
        text += f" ± {fmt(values.std(ddof=1) * scale, digits)}"
    return f"{text}{unit} (seed{'s' if len(values) > 1 else ''} {seeds})"


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval for a rate the article measured as k out of n images."""
    alpha = 1 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def rate_matches(ours: pd.Series, k: int, n: int) -> bool:
    low, high = clopper_pearson(k, n)
    return bool(low <= ours.mean() <= high)


def interval_text(k: int, n: int) -> str:
    low, high = clopper_pearson(k, n)
    return f"{k}/{n} = {100 * k / n:.1f} %, 95 % interval {100 * low:.1f}-{100 * high:.1f} %"


@dataclass(frozen=True)
class Measured:
    figure: str
    verdict: str
    why: str


@dataclass(frozen=True)
class Claim:
    """A statement of an article, where it stands, and how the preset's runs test it."""

    article: str
    where: str
    quote: str
    translation: str
    labels: tuple[str, ...]
    measure: Callable[[pd.DataFrame], Measured]

    def evaluate(self, runs: pd.DataFrame) -> Measured:
        if not runs.label.isin(self.labels).any():
            return Measured("no completed run", NOT_RUN, "run `python benchmarks/articles.py` first")
        return self.measure(runs)


def ae_label(kind: str) -> str:
    return f"article000_{kind}"


def ae_figure(runs: pd.DataFrame, kind: str) -> str:
    label = ae_label(kind)
    return (
        f"AUROC {spread(per_seed(runs, label, 'auroc'))}; validation BCE "
        f"{spread(per_seed(runs, label, 'val_loss'), scale=1, digits=4, unit='')}"
    )


def reconstruction_claim(kind: str, where: str, quote: str, translation: str) -> Claim:
    def measure(runs: pd.DataFrame) -> Measured:
        return Measured(
            ae_figure(runs, kind),
            NOT_COMPARABLE,
            "The article shows reconstructions of all ten digits as pictures, with no number; the preset "
            "trains on digit 0 and reports how well the reconstruction error ranks the other digits.",
        )

    return Claim("000", where, quote, translation, (ae_label(kind),), measure)


def deep_is_better(runs: pd.DataFrame) -> Measured:
    deep, shallow = ae_label("deep_ae"), ae_label("undercomplete_ae")
    loss_deep, loss_shallow = per_seed(runs, deep, "val_loss"), per_seed(runs, shallow, "val_loss")
    auc_deep, auc_shallow = per_seed(runs, deep, "auroc"), per_seed(runs, shallow, "auroc")
    figure = (
        f"deep_ae: validation BCE {spread(loss_deep, 1, 4, '')}, AUROC {spread(auc_deep)}; "
        f"undercomplete_ae: {spread(loss_shallow, 1, 4, '')}, AUROC {spread(auc_shallow)}"
    )
    if loss_deep.empty or loss_shallow.empty:
        return Measured(figure, NOT_RUN, "Needs both presets.")
    better = loss_deep.mean() < loss_shallow.mean() and auc_deep.mean() > auc_shallow.mean()
    return Measured(
        figure,
        REPRODUCED if better else NOT_REPRODUCED,
        (
            "The deep AE reconstructs held-out normal digits better and ranks anomalies better"
            if better
            else "The deep AE is not better on both reconstruction and AUROC"
        )
        + " (it also trains with adam for 100 epochs where the 784-32-784 AE uses adadelta for 50, as in "
        "the article, so depth is not the only difference).",
    )


def cnn_is_better(runs: pd.DataFrame) -> Measured:
    dense = {kind: per_seed(runs, ae_label(kind), "auroc") for kind in ("undercomplete_ae", "sparse_ae", "deep_ae")}
    conv = per_seed(runs, ae_label("conv_ae"), "auroc")
    denoising = per_seed(runs, ae_label("denoising_ae"), "auroc")
    dense = {k: v for k, v in dense.items() if not v.empty}
    figure = f"AUROC conv_ae {spread(conv)}, denoising_ae {spread(denoising)}; dense: " + ", ".join(
        f"{k} {spread(v)}" for k, v in dense.items()
    )
    if conv.empty or not dense:
        return Measured(figure, NOT_RUN, "Needs the convolutional and the dense presets.")
    best_kind = max(dense, key=lambda k: dense[k].mean())
    if conv.mean() > dense[best_kind].mean():
        return Measured(figure, REPRODUCED, "The convolutional AE ranks anomalies better than every dense AE.")
    return Measured(
        figure,
        NOT_REPRODUCED,
        f"With digit 0 normal the dense {best_kind} ranks the other digits better than the conv AE "
        f"({100 * dense[best_kind].mean():.1f} vs {100 * conv.mean():.1f} % AUROC).",
    )


def sparse_swings(runs: pd.DataFrame) -> Measured:
    sparse = per_seed(runs, ae_label("sparse_ae"), "auroc")
    plain = per_seed(runs, ae_label("undercomplete_ae"), "auroc")
    gap = abs(sparse.mean() - plain.mean()) * 100
    return Measured(
        f"sparse_ae (L1 1e-6) AUROC {spread(sparse, digits=2)}; the same AE without the penalty "
        f"{spread(plain, digits=2)}",
        NOT_COMPARABLE,
        "The article compares three penalty strengths in pictures; the preset runs only the article's "
        f"1e-6, which moves the mean AUROC by {gap:.2f} points.",
    )


def denoising_claim(runs: pd.DataFrame) -> Measured:
    losses = {kind: per_seed(runs, ae_label(kind), "val_loss") for kind in AE_KINDS}
    losses = {k: v for k, v in losses.items() if not v.empty}
    dae = losses.pop("denoising_ae", pd.Series(dtype=float))
    figure = (
        f"validation BCE (clean held-out digits) denoising_ae {spread(dae, 1, 4, '')}; "
        + ", ".join(f"{k} {spread(v, 1, 4, '')}" for k, v in losses.items())
        + f"; denoising_ae AUROC {spread(per_seed(runs, ae_label('denoising_ae'), 'auroc'))}"
    )
    if dae.empty or not losses:
        return Measured(figure, NOT_RUN, "Needs the denoising and the other autoencoder presets.")
    best_other = min(losses, key=lambda k: losses[k].mean())
    caveat = (
        " The article's own code fits x_train -> x_train, so its pictures come from a conv AE that never saw "
        "noise; the preset trains noisy -> clean as its text describes."
    )
    if dae.mean() < losses[best_other].mean():
        return Measured(
            figure,
            REPRODUCED,
            f"The denoising AE reconstructs clean held-out digits best of the five (next: {best_other})." + caveat,
        )
    return Measured(figure, NOT_REPRODUCED, f"{best_other} reconstructs clean held-out digits better." + caveat)


def rates_above(folder: Path, cut: float) -> tuple[float, float]:
    """(share of anomalies, share of normal images) scoring above ``cut`` in a run's scores.csv."""
    scores = pd.read_csv(folder / "scores.csv")
    flagged = scores["score"] > cut
    return float(flagged[scores.label == 1].mean()), float(flagged[scores.label == 0].mean())


def article001_claim(
    model: str, caught: tuple[int, int], ones: tuple[int, int], article_cut: float | None = None
) -> Callable[[pd.DataFrame], Measured]:
    """The article's confusion matrix as counts: anomalies caught (k of n) and ones flagged (k of n).

    ``article_cut``: the article's own decision on the score when the preset's threshold rule differs
    (the CNN's argmax is P(anomaly) > 0.5); the verdict then uses it and the figure shows both.
    """

    def measure(runs: pd.DataFrame) -> Measured:
        recall, flagged = per_seed(runs, A001, "recall", model), per_seed(runs, A001, "flagged_1", model)
        figure = f"anomalies caught {spread(recall)}; ones flagged {spread(flagged)}"
        if recall.empty:
            return Measured(figure, NOT_RUN, f"No completed {model} run.")
        if article_cut is not None:
            rows = runs[(runs.label == A001) & (runs.model == model)]
            at_cut = pd.DataFrame([rates_above(path, article_cut) for path in rows.path], index=rows.seed)
            rule = rows.threshold_rule.iloc[0]
            cut = spread(rows.set_index("seed").threshold.astype(float).sort_index(), scale=1, digits=4, unit="")
            figure = (
                f"with the article's decision (score > {article_cut}): anomalies caught {spread(at_cut[0])}; "
                f"ones flagged {spread(at_cut[1])}. With the preset's threshold (`{rule}`, {cut}): {figure}"
            )
            recall, flagged = at_cut[0], at_cut[1]
        ok_caught, ok_ones = rate_matches(recall, *caught), rate_matches(flagged, *ones)
        why = f"Article: anomalies caught {interval_text(*caught)}; ones flagged {interval_text(*ones)}. "
        if ok_caught and ok_ones:
            return Measured(
                figure,
                REPRODUCED,
                why
                + "Both of our rates lie inside"
                + (" (with the article's decision rule)." if article_cut is not None else "."),
            )
        misses = [name for name, ok in (("anomalies caught", ok_caught), ("ones flagged", ok_ones)) if not ok]
        return Measured(figure, NOT_REPRODUCED, why + f"Ours fall outside for {' and '.join(misses)}.")

    return measure


def latent_beats_pixels(runs: pd.DataFrame) -> Measured:
    latent = per_seed(runs, A002, "auroc", "article002_ae_ocsvm")
    pixel = per_seed(runs, A002, "auroc", "ocsvm")
    ours = per_seed(runs, A002, "auroc", "ae_ocsvm")
    figure = (
        f"AUROC latent SVM (article's model) {spread(latent)}; pixel SVM {spread(pixel)}; "
        f"this package's ae_ocsvm {spread(ours)}"
    )
    if latent.empty or pixel.empty:
        return Measured(figure, NOT_RUN, "Needs the article002_ae_ocsvm and ocsvm runs.")
    wins = int((latent > pixel.mean()).sum())
    dead = per_seed(runs, A002, "code_dims_constant", "article002_ae_ocsvm")
    per = ", ".join(
        f"seed {int(s)}: {100 * v:.1f}" + (" with a dead code unit" if dead.get(s, 0) > 0 else "")
        for s, v in latent.items()
    )
    if wins == len(latent):
        return Measured(figure, REPRODUCED, f"The latent SVM beats the pixel SVM for every seed ({per}).")
    return Measured(
        figure,
        NOT_REPRODUCED,
        f"The latent SVM beats the pixel SVM ({100 * pixel.mean():.1f}) for {wins} of {len(latent)} seeds "
        f"({per}; a dead unit of the 2-D ReLU code is metrics.json's detector.code_dims_constant).",
    )


def zeros_flagged(label: str) -> Callable[[pd.DataFrame], Measured]:
    """Article 003: 980 of 980 test zeros flagged (the printed 1.0)."""

    def measure(runs: pd.DataFrame) -> Measured:
        zeros, normal = per_seed(runs, label, "flagged_0"), per_seed(runs, label, "normal_flagged")
        auroc = per_seed(runs, label, "auroc")
        val = runs.loc[runs.label == label, "config"].map(lambda c: c.get("dataset.val_fraction"))
        split = f"validation fraction {val.iloc[0]}" if len(val) else ""
        figure = f"{split}: zeros flagged {spread(zeros)}; digits 1-9 flagged {spread(normal)}; AUROC {spread(auroc)}"
        if zeros.empty:
            return Measured(figure, NOT_RUN, "No completed run.")
        if rate_matches(zeros, 980, 980):
            return Measured(figure, REPRODUCED, f"Article {interval_text(980, 980)}; ours lies inside.")
        return Measured(
            figure,
            NOT_REPRODUCED,
            f"Article {interval_text(980, 980)}. The zeros' reconstruction errors overlap those of "
            f"digits 1-9 (AUROC {100 * auroc.mean():.0f} %): {100 * (1 - zeros.mean()):.0f} % of the zeros "
            f"stay under the mean + 1 std threshold, which already flags {100 * normal.mean():.0f} % of the "
            "normal test digits.",
        )

    return measure


def anogan_accuracy(runs: pd.DataFrame) -> Measured:
    acc = per_seed(runs, A004, "accuracy")
    rows = runs[runs.label == A004]
    oracle = pd.Series([best_accuracy(p) for p in rows.path], index=rows.seed, dtype=float).sort_index()
    figure = (
        f"accuracy {spread(acc)} at the {fill('{threshold.q}', rows.iloc[0] if len(rows) else None)}th "
        f"percentile of held-out 1s; {spread(oracle)} at the best threshold "
        f"on the test scores; AUROC {spread(per_seed(runs, A004, 'auroc'))}"
    )
    if acc.empty:
        return Measured(figure, NOT_RUN, "No completed run.")
    if rate_matches(acc, 97, 100):
        return Measured(
            figure,
            REPRODUCED,
            f"Article about {interval_text(97, 100)}; ours lies inside, with a "
            "threshold set on held-out training 1s instead of read off the test histogram.",
        )
    return Measured(figure, NOT_REPRODUCED, f"Article about {interval_text(97, 100)}; ours lies outside.")


CLAIMS = (
    reconstruction_claim(
        "undercomplete_ae",
        "'Undercomplete Autoencoder', under the picture of inputs and outputs",
        "若干薄れている部分がありますが、大体は再現できていることが確認できますね。",
        "Some parts are a little faded, but we can see it is mostly reproduced.",
    ),
    reconstruction_claim(
        "sparse_ae",
        "'Sparse Autoencoder', under the training result",
        "若干薄れている部分がありますが、Sparse Autoencoderでも大体は復元できていることが確認できました。",
        "Some parts are a little faded, but the Sparse Autoencoder too restores them mostly.",
    ),
    reconstruction_claim(
        "deep_ae",
        "'Deep Autoencoder', under the training result",
        "だいぶ鮮明に復元できていることが確認できました。",
        "It restores them quite sharply.",
    ),
    reconstruction_claim(
        "conv_ae",
        "'Convolutional Autoencoder', under the training result",
        "CNNを使ったオートエンコーダもかなり鮮明に再現できていることが確認できました。",
        "The CNN autoencoder also reproduces them quite sharply.",
    ),
    Claim(
        "000",
        "closing summary (まとめ), 1st bullet after the list of the five types; also in 'Sparse Autoencoder'",
        "Sparse Autoencoderは指定する正規化パラメータによって精度が大きくぶれる。",
        "The Sparse Autoencoder's accuracy swings widely with the regularisation parameter.",
        (ae_label("sparse_ae"),),
        sparse_swings,
    ),
    Claim(
        "000",
        "closing summary (まとめ), 2nd bullet after the list of the five types",
        "エンコーダ、デコーダ層をディープ(複数階層)にすると精度向上が見込める。",
        "Making the encoder and decoder layers deep (several layers) can be expected to improve accuracy.",
        (ae_label("deep_ae"), ae_label("undercomplete_ae")),
        deep_is_better,
    ),
    Claim(
        "000",
        "closing summary (まとめ), 3rd bullet after the list of the five types",
        "画像系の異常検知にはCNNモデルのオートエンコーダを使ったほうがよさそう。",
        "For anomaly detection on images, a CNN autoencoder seems the better choice.",
        tuple(ae_label(k) for k in AE_KINDS),
        cnn_is_better,
    ),
    Claim(
        "000",
        "closing summary (まとめ), 4th bullet after the list of the five types",
        "Denoising Autoencoder (DAE)はノイズを加えることで精度の高い復元モデルの構築ができそう。",
        "By adding noise, the Denoising Autoencoder seems to give a highly accurate restoration model.",
        (ae_label("denoising_ae"),),
        denoising_claim,
    ),
    Claim(
        "001",
        "'CNNによる異常検知', the confusion matrix and the sentence under it",
        "True_0 5 5 / True_1 0 1135 ... 1以外の異常画像は10枚のうち5枚を、誤って正常と分類しています。",
        "(0 of 1,135 ones flagged) ... of the 10 anomalous images (not 1), 5 are wrongly classified as normal.",
        (A001,),
        article001_claim("cnn_classifier", caught=(5, 10), ones=(0, 1135), article_cut=0.5),
    ),
    Claim(
        "001",
        "'CAEによる異常検知', the confusion matrix and the sentence under it",
        "True_0 10 0 / True_1 343 792 ... 正常データも半分弱は異常と分類さていますが、異常データは全て正しく分類できています。",
        "(343 of 1,135 ones flagged) ... a little under half of the normal data is classified as anomalous too, "
        "but all anomalous data is classified correctly.",
        (A001,),
        article001_claim("article001_cae", caught=(10, 10), ones=(343, 1135)),
    ),
    Claim(
        "002",
        "'評価', under the ROC curves; repeated in the conclusion (終わりに)",
        "この数値はオートエンコーダーの学習結果によって毎回変わると思いますが、次元圧縮しない時に比べてはちょっとは良くなると思います。"
        " / 結果としては前回に比べて多少性能が改善することがわかりました。",
        "This number will change with every training of the autoencoder, but it should be a little better than "
        "without the dimensionality reduction. / The performance improved somewhat over last time (the pixel "
        "One-Class SVM).",
        (A002,),
        latent_beats_pixels,
    ),
    Claim(
        "003",
        "'手書き文字を用いた異常検知', output of the last code cell and the sentence under it",
        "sum(anomalies_test)/len(anomalies_test) → 1.0 ... 結果として全ての0を異常と判別することができました!",
        "As a result, every 0 was identified as an anomaly!",
        (A003,),
        zeros_flagged(A003),
    ),
    Claim(
        "003",
        "(the same claim, the article's 80/20 split: `dataset.val_fraction=0.2`)",
        "(as above)",
        "(as above)",
        (A003_SPLIT,),
        zeros_flagged(A003_SPLIT),
    ),
    Claim(
        "004",
        "'コードを実行します', under the score histogram of the 100 evaluation images",
        "今回の場合、スコアの閾値を28〜36の間に設定すると、97%くらいの精度で異常検知が出来ることが分かります。",
        "Here, setting the score threshold anywhere between 28 and 36 detects anomalies with about 97 % accuracy.",
        (A004,),
        anogan_accuracy,
    ),
)

# Checks made once by hand outside the presets (not rerun by this script), printed under the claims.
MANUAL_CHECKS = (
    "Article 003's own code, run unchanged except for reading the local MNIST IDX files instead of downloading "
    "(dense 784-128-784, binary cross-entropy, `Adam()`, 50 epochs, batch 256, `train_test_split(test_size=0.2, "
    "random_state=42)`, threshold = mean + std of the validation MAE; Keras 3.15.1, TensorFlow 2.21.0, no seed set), "
    "flagged 464 of the 980 test zeros (47.3 %) and, with the same threshold, 12.7 % of the test digits 1-9; it took "
    "1 min 41 s on the shared 2 cores. So the presets are faithful to the code, and the article's 1.0 does not come "
    "back with today's Keras.",
)


# Where each preset's code differs from the article's: (aspect, the article's code, the preset).
# "{key}" is filled from the config of the preset's first completed run (dotted keys).
DEVIATIONS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "000": (
        (
            "task",
            "reconstructs all ten digits (no detection, no score)",
            "one-class setting added for an AUROC: trains on digit {dataset.normal_classes} only, the other nine digits of "
            "the official test set are anomalous; score = per-image {model.score} reconstruction error",
        ),
        (
            "validation data",
            "`validation_data=(x_test, x_test)`: the test set",
            "{dataset.val_fraction:%} of the normal training images held out; the test set is never seen in training",
        ),
        (
            "optimiser (Keras 2 -> 3)",
            "`'adadelta'` = learning rate 1.0 in Keras 2 (undercomplete, sparse, conv)",
            "adadelta with `trainer.learning_rate=1.0` set in the presets (Keras 3's default 0.001 barely trains); "
            "adam (deep, denoising) has the same defaults in both",
        ),
        (
            "sparse penalty",
            "`activity_regularizer=l1(1e-6)`, whose scaling over the batch changed between Keras versions",
            "the model's own loss term: 1e-6 x batch mean of the per-image sum |code|",
        ),
        (
            "denoising input",
            "`fit(x_train, x_train)`: the noisy images are made but never used",
            "trained noisy -> clean with fresh noise (factor 0.5, clipped to [0, 1]) every batch",
        ),
        ("threshold", "none", "mean + {threshold.k} std of the validation scores (does not affect the AUROC)"),
    ),
    "001": (
        (
            "test set",
            "1,135 test ones + the first 10 other test digits",
            "every MNIST test image: {n_test} with {n_test_anomalies} anomalies, so rates compare, counts do not",
        ),
        (
            "CAE training data",
            "the ones only (`X_train[y_train == 1]`), 80/20 split (random_state 0)",
            "the ones **and the 10 labelled anomalies** ({n_train_anomalies} anomalies in its training set: the preset "
            "adds them to both models, the article only to the CNN); validation fraction {dataset.val_fraction:%}",
        ),
        (
            "CNN decision",
            "argmax of the softmax (P(anomaly) > 0.5)",
            "**the preset's `{threshold_rule}` rule applies to both models**: for the CNN the mean training P(anomaly), "
            "far below 0.5 (the claims table gives it), so it flags many more images; the table shows both decisions",
        ),
        ("CNN validation", "30 % random split (random_state 0)", "30 % stratified hold-out"),
        (
            "CAE threshold",
            "mean per-image sum of squared errors of its training images",
            "the same (`train_mean` on the `sse` score)",
        ),
    ),
    "002": (
        ("anomaly class", "class 7, called boots/shoes in the text", "class 7 (Fashion-MNIST: sneaker)"),
        (
            "autoencoder data",
            "every training sandal, no validation split",
            "{dataset.val_fraction:%} of the training sandals held out for validation",
        ),
        (
            "baseline",
            "pixel One-Class SVM from the previous article (its AUC appears only in a figure)",
            "`ocsvm` on raw pixels, scikit-learn defaults, run here on the same split",
        ),
        (
            "AUROC",
            "normal as positive class, score = decision_function",
            "anomaly as positive class, score = -decision_function: the same number",
        ),
        ("threshold", "none (ROC only)", "the SVM's own boundary (score > 0); does not affect the AUROC"),
    ),
    "003": (
        (
            "validation split",
            "`train_test_split(test_size=0.2, random_state=42)`",
            "`dataset.val_fraction` = {dataset.val_fraction} (split by `dataset.split_seed`); the second row uses 0.2: "
            "the same share, not the same images",
        ),
        (
            "test set",
            "the 980 test zeros only",
            "all {n_test} test images (zeros anomalous, digits 1-9 normal): the share of zeros flagged is the same "
            "quantity, and false alarms and AUROC come with it",
        ),
        (
            "threshold",
            "`np.mean(mae) + np.std(mae)` of the validation errors",
            "`val_mean_std` with k = {threshold.k} on the {model.score} score (population std, as np.std)",
        ),
        (
            "Keras 2 -> 3",
            "tf.keras `Adam()`: learning rate 0.001",
            "adam, learning rate {trainer.learning_rate}: the same",
        ),
        ("seeds", "none set", "`trainer.seed` 0, 1, 2"),
    ),
    "004": (
        (
            "GAN training",
            "100 epochs (200 s each on a MacBook Air)",
            "{trainer.epochs} epochs, batch {trainer.batch_size}",
        ),
        (
            "latent search",
            "300 steps per image",
            "{model.search_steps} Adam steps on z (step size {model.search_lr}), a batch of images at a time; chosen on "
            "held-out training 1s and 9s, where 300 steps ranked no better",
        ),
        ("evaluation images", "100 (mix of 1s and 9s not stated)", "all {n_test} test 1s and 9s"),
        (
            "threshold",
            "anywhere in 28-36, read off the test histogram",
            "the {threshold.q}th percentile of held-out training 1s ({dataset.val_fraction:%} of them), no test label "
            "used: {threshold} for seed {seed} (the score's scale depends on the image scaling and the search, so the "
            "article's 28-36 does not transfer)",
        ),
    ),
}


# The run whose config fills an article's "{key}" placeholders: (preset label, model or None for any).
DEVIATION_SOURCE = {
    "000": (ae_label("undercomplete_ae"), None),
    "001": (A001, "article001_cae"),
    "002": (A002, "article002_ae_ocsvm"),
    "003": (A003, None),
    "004": (A004, None),
}


def fill(template: str, run: pd.Series | None) -> str:
    """Replace ``{dotted.key}`` with the run's config (or metric) value; ``?`` without a run."""

    def value(match: re.Match) -> str:
        if run is None:
            return "?"
        key, spec = match.group(1), match.group(2)
        found = run["config"].get(key, run.get(key))
        if found is None:
            return "?"
        if spec == "%":
            return f"{100 * float(found):g} %"
        if isinstance(found, float):
            return str(int(found)) if found.is_integer() else f"{found:.4g}"
        return str(found)

    return re.sub(r"\{([\w.]+)(?::(%))?\}", value, template)


# ---------------------------------------------------------------------------------------------
# The report


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def claims_table(runs: pd.DataFrame) -> list[str]:
    lines = [
        "| article | where in the article | claim (quoted) | translation | our figure | verdict | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for claim in CLAIMS:
        measured = claim.evaluate(runs)
        lines.append(
            "| "
            + " | ".join(
                cell(c)
                for c in (
                    claim.article,
                    claim.where,
                    claim.quote,
                    claim.translation,
                    measured.figure,
                    f"**{measured.verdict}**",
                    measured.why,
                )
            )
            + " |"
        )
    return lines


def deviations_table(runs: pd.DataFrame) -> list[str]:
    first_run = {}
    for article, (label, model) in DEVIATION_SOURCE.items():
        rows = runs[(runs.label == label) & ((runs.model == model) if model else True)]
        first_run[article] = rows.iloc[0] if len(rows) else None
    lines = ["| article | aspect | the article's code | our preset |", "|---|---|---|---|"]
    for article, items in DEVIATIONS.items():
        for aspect, theirs, ours in items:
            lines.append(f"| {article} | {cell(aspect)} | {cell(theirs)} | {cell(fill(ours, first_run[article]))} |")
    return lines


def runs_table(runs: pd.DataFrame, problems: pd.DataFrame) -> list[str]:
    """Every preset and model: seeds, AUROC and accuracy in % (mean ± std over seeds), seconds per run."""

    def cell_of(values: pd.Series) -> str:
        return fmt(100 * values.mean()) + (f" ± {fmt(100 * values.std(ddof=1))}" if len(values) > 1 else "")

    lines = [
        "| preset | model | seeds | AUROC % | accuracy % | s / run | not completed |",
        "|---|---|---|---|---|---|---|",
    ]
    for preset in PRESETS:
        rows = runs[runs.label == preset.label]
        bad = int((problems.label == preset.label).sum())
        if rows.empty:
            lines.append(f"| {preset.label} | | | | | | {bad} |")
        for model, group in rows.groupby("model", sort=False):
            lines.append(
                f"| {preset.label} | {model} | {', '.join(str(int(s)) for s in group.seed)} | "
                f"{cell_of(group.auroc.astype(float))} | {cell_of(group.accuracy.astype(float))} | "
                f"{group.seconds.mean():.0f} | {bad} |"
            )
    return lines


def start_up_seconds(runs: pd.DataFrame, sweeps: list[dict]) -> list[float]:
    """Per sweep, its last invocation's wall time minus the run time of the jobs it ran (not resumed).

    What a sweep costs beyond its runs: starting Python, TensorFlow and Hydra, and checking resumed jobs.
    """
    overheads = []
    for sweep in sweeps:
        if "started_at" not in sweep:
            continue
        (sweep_dir,) = [arg.split("=", 1)[1] for arg in sweep["command"] if arg.startswith("hydra.sweep.dir=")]
        label = Path(sweep_dir).name
        started = pd.Timestamp(sweep["started_at"])
        mine = runs[runs.label == label]
        ran = mine[pd.to_datetime(mine.started_at, utc=True, format="ISO8601") >= started]
        overheads.append(sweep["wall_seconds"] - ran.seconds.sum())
    return overheads


def time_lines(runs: pd.DataFrame, root: Path) -> list[str]:
    if runs.empty:
        return ["**Time:** no completed run yet."]
    total = runs.seconds.sum()
    sweeps = benchmark_sweeps.read_benchmark_files(root)
    overheads = start_up_seconds(runs, sweeps)
    loads = [v for i in sweeps for v in (i["load_average_before"], i["load_average_after"])]
    by_preset = runs.groupby("label", sort=False).seconds.sum().astype(float)
    biggest = ", ".join(f"{label} {seconds / 60:.1f} min" for label, seconds in by_preset.nlargest(3).items())
    load_text = (
        f"1-minute load average {min(loads):.1f}-{max(loads):.1f} when the sweeps started and ended"
        if loads
        else "load average not recorded"
    )
    start_up = (
        f" On top, each of the {len(PRESETS)} sweeps costs about {np.mean(overheads):.0f} s per invocation "
        f"(start-up and resume checks, measured on {len(overheads)} sweeps), so one pass from a clean clone "
        f"takes about {(total + len(PRESETS) * np.mean(overheads)) / 60:.0f} min."
        if overheads
        else ""
    )
    return [
        f"**Time:** the {len(runs)} completed runs took {total / 60:.0f} min of run time together (sum of each run's "
        f"own wall time, `timings.total`; largest: {biggest}) on a machine with {os.cpu_count()} CPU cores **shared "
        f"with other jobs** ({load_text}), so the times are upper bounds.{start_up}",
    ]


def expensive_note(runs: pd.DataFrame, args: argparse.Namespace) -> str:
    """Why the expensive presets run fewer seeds, with the time one of their runs took."""
    labels = [p.label for p in PRESETS if p.expensive]
    minutes = runs[runs.label.isin(labels)].seconds.mean() / 60
    extra = (len(args.seeds) - args.expensive_seeds) * minutes * len(labels)
    if np.isnan(minutes):
        return f"each run costs many times the others (the report is kept to about {TIME_BUDGET_MIN} min)"
    return (
        f"one such run took {minutes:.0f} min here (GAN training plus a latent search per test image), so "
        f"{len(args.seeds)} seeds would add {extra:.0f} min to a report kept to about {TIME_BUDGET_MIN} min "
        "on 2 shared cores"
    )


def write_report(args: argparse.Namespace) -> Path:
    root = args.runs.resolve()
    runs, problems = read_runs(root)
    seeds = ", ".join(map(str, args.seeds))
    expensive = ", ".join(p.label for p in PRESETS if p.expensive)
    lines = [
        "# The articles' claims beside what their presets measure",
        "",
        "Each row quotes a claim from one of the five articles in `../shared/articles/` (Japanese; where it stands and a "
        "translation), the figure our preset measures on the full MNIST / Fashion-MNIST data, and a verdict. "
        f"Figures are mean ± std over seeds {seeds} (`trainer.seed`; the data split is fixed), except {expensive}: "
        f"seed {', '.join(map(str, args.seeds[: args.expensive_seeds]))} only, because {expensive_note(runs, args)}.",
        "",
        "Verdicts: a claimed count is **reproduced** when our mean rate lies inside the 95 % Clopper-Pearson interval of "
        "the article's count (a count out of 10 or 100 images is uncertain); a claimed comparison when it holds for the "
        "means over seeds (article 002's, which its author expects from every training, for every seed); "
        "**not comparable** when the article gives no number or measures something the preset does not.",
        "",
        "Regenerate (finished runs are skipped; `ANOMALY_BENCH_DATA` pointing at a folder with the `mnist/` and "
        "`fashion-mnist/` IDX files): `python benchmarks/articles.py` "
        "(`--table-only` rebuilds this file from the run folders in "
        f"`{root.relative_to(REPO) if root.is_relative_to(REPO) else root}`).",
        "",
        "## Claims",
        "",
        *claims_table(runs),
        "",
        *(f"Checked by hand once: {text}" for text in MANUAL_CHECKS),
        "",
        "## Where the presets differ from the articles' code",
        "",
        *deviations_table(runs),
        "",
        "## Every run",
        "",
        *runs_table(runs, problems),
        "",
        *time_lines(runs, root),
        "",
    ]
    if len(problems):
        lines += [
            "Not completed (left out above):",
            "",
            *(f"- `{r.folder}`: {r.status} ({r.problem})" for r in problems.itertuples()),
            "",
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    return args.out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not args.table_only:
        for preset, seeds in planned_runs(args):
            benchmark_sweeps.run_sweep(preset.command(seeds), args.runs.resolve() / preset.label)
    print(f"report: {write_report(args)}")


if __name__ == "__main__":
    main()
