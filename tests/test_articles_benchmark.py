"""benchmarks/articles.py: which presets and seeds it runs, and the claims table it builds from run folders."""

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import CONF_DIR
from test_compare import config_with, write_run


@pytest.fixture(scope="module")
def articles():
    import articles  # benchmarks/articles.py (benchmarks/ is on pytest's pythonpath)

    return articles


def fake_run(runs: Path, label: str, seed: int, model: str, val_fraction: float = 0.1, **metrics) -> Path:
    """A completed run folder of one preset, as anomaly-bench writes it."""
    config = config_with(model__name=model, trainer__seed=seed, dataset__val_fraction=val_fraction, threshold__q=95.0)
    return write_run(runs / label / f"{model}_s{seed}", config, seed=seed, **metrics)


def claim_rows(articles, runs: Path, tmp_path: Path) -> list[list[str]]:
    """Build the report from ``runs``; the cells of each row of its claims table."""
    out = tmp_path / "articles.md"
    articles.main(["--table-only", "--runs", str(runs), "--out", str(out)])
    lines = out.read_text().splitlines()
    start = lines.index("## Claims") + 4
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return rows


def row_of(rows: list[list[str]], article: str, quote: str) -> list[str]:
    """The one row of an article whose quoted claim starts with ``quote``."""
    (found,) = [r for r in rows if r[0] == article and r[2].startswith(quote)]
    return found


def test_the_plan_is_every_preset_with_three_seeds_and_anogan_with_one(articles):
    plan = {p.label: (p.command(seeds), seeds) for p, seeds in articles.planned_runs(articles.parse_args([]))}
    assert list(plan) == [
        *(f"article000_{k}" for k in ("undercomplete_ae", "sparse_ae", "deep_ae", "conv_ae", "denoising_ae")),
        "article001_cnn_vs_cae",
        "article002_ae_ocsvm_vs_ocsvm",
        "article003_digits1to9_vs_0",
        "article003_digits1to9_vs_0-val_fraction_0.2",
        "article004_anogan",
    ]
    assert {label: seeds for label, (_, seeds) in plan.items()} == {
        **{label: [0, 1, 2] for label in plan},
        "article004_anogan": [0],
    }
    assert plan["article003_digits1to9_vs_0-val_fraction_0.2"][0] == [
        "experiment=article003_digits1to9_vs_0",
        "trainer.seed=0,1,2",
        "dataset.val_fraction=0.2",
    ]
    # every preset the plan names exists, and every article preset is in the plan
    experiments = {cmd[0].removeprefix("experiment=") for cmd, _ in plan.values()}
    assert experiments == {p.stem for p in (CONF_DIR / "experiment").glob("article*.yaml")}


def test_seed_options_and_only(articles):
    args = articles.parse_args(["--seeds", "0", "1", "2", "--expensive-seeds", "3", "--only", "article004_anogan"])
    assert [(p.label, seeds) for p, seeds in articles.planned_runs(args)] == [("article004_anogan", [0, 1, 2])]
    with pytest.raises(SystemExit):
        articles.parse_args(["--only", "article999"])
    with pytest.raises(SystemExit):
        articles.parse_args(["--expensive-seeds", "0"])


def test_clopper_pearson_interval_of_all_and_none(articles):
    # k = n: the lower end solves p**n = 0.025; k = 0: the upper end solves (1 - p)**n = 0.025.
    assert articles.clopper_pearson(980, 980) == pytest.approx((0.025 ** (1 / 980), 1.0))
    assert articles.clopper_pearson(0, 1135) == pytest.approx((0.0, 1 - 0.025 ** (1 / 1135)))
    low, high = articles.clopper_pearson(5, 10)
    assert low == pytest.approx(0.18709, abs=1e-5) and high == pytest.approx(0.81291, abs=1e-5)


def test_article003_rows_give_zeros_flagged_over_seeds_and_the_verdict(articles, tmp_path):
    runs = tmp_path / "runs"
    for seed, zeros in zip((0, 1, 2), (0.40, 0.42, 0.44)):
        # 9,020 normal test digits, 1,443 of them flagged (16.0 %)
        fake_run(
            runs,
            "article003_digits1to9_vs_0",
            seed,
            "dense_ae_128",
            auroc=0.78 + 0.01 * seed,
            flagged_rate_by_class={"0": zeros, "1": 0.1},
            confusion_matrix=[[7577, 1443], [560, 420]],
        )
    for seed in (0, 1):  # the article's split: every zero flagged
        fake_run(
            runs,
            "article003_digits1to9_vs_0-val_fraction_0.2",
            seed,
            "dense_ae_128",
            val_fraction=0.2,
            auroc=0.99,
            flagged_rate_by_class={"0": 1.0},
            confusion_matrix=[[9000, 20], [0, 980]],
        )
    rows = claim_rows(articles, runs, tmp_path)
    preset = row_of(rows, "003", "sum(anomalies_test)")
    assert preset[4] == (
        "validation fraction 0.1: zeros flagged 42.0 ± 2.0 % (seeds 0, 1, 2); digits 1-9 flagged "
        "16.0 ± 0.0 % (seeds 0, 1, 2); AUROC 79.0 ± 1.0 % (seeds 0, 1, 2)"
    )
    assert preset[5] == "**not reproduced**"
    assert preset[6].startswith("Article 980/980 = 100.0 %, 95 % interval 99.6-100.0 %.")
    assert "58 % of the zeros stay under" in preset[6] and "flags 16 % of the normal test digits" in preset[6]
    split = row_of(rows, "003", "(as above)")
    assert split[4].startswith("validation fraction 0.2: zeros flagged 100.0 ± 0.0 % (seeds 0, 1)")
    assert split[5] == "**reproduced**"
    # presets without runs say so instead of inventing a figure
    assert row_of(rows, "004", "今回の場合")[4:6] == ["no completed run", "**not run**"]


def test_article001_counts_are_compared_with_the_articles_interval(articles, tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        cnn = fake_run(
            runs,
            "article001_cnn_vs_cae",
            seed,
            "cnn_classifier",
            recall=0.9,
            threshold=0.001,
            threshold_rule="train_mean",
            flagged_rate_by_class={"1": 0.01},
            scores=False,
        )
        # P(anomaly) > 0.5 (the article's argmax): 5 of 10 anomalies, none of the 20 ones
        pd.DataFrame({"label": [0] * 20 + [1] * 10, "score": [0.01] * 20 + [0.2] * 5 + [0.9] * 5}).to_csv(
            cnn / "scores.csv", index=False
        )
        fake_run(
            runs,
            "article001_cnn_vs_cae",
            seed,
            "article001_cae",
            recall=0.6 + 0.1 * seed,
            flagged_rate_by_class={"1": 0.3},
        )
    write_run(runs / "article001_cnn_vs_cae" / "9_broken", config_with(model__name="article001_cae"), status="failed")
    rows = claim_rows(articles, runs, tmp_path)
    cnn = row_of(rows, "001", "True_0 5 5")
    assert cnn[4] == (
        "with the article's decision (score > 0.5): anomalies caught 50.0 ± 0.0 % (seeds 0, 1); ones flagged "
        "0.0 ± 0.0 % (seeds 0, 1). With the preset's threshold (`train_mean`, 0.0010 ± 0.0000 (seeds 0, 1)): "
        "anomalies caught 90.0 ± 0.0 % (seeds 0, 1); ones flagged 1.0 ± 0.0 % (seeds 0, 1)"
    )
    assert cnn[5] == "**reproduced**"
    cae = row_of(rows, "001", "True_0 10 0")
    assert cae[4] == "anomalies caught 65.0 ± 7.1 % (seeds 0, 1); ones flagged 30.0 ± 0.0 % (seeds 0, 1)"
    assert cae[5] == "**not reproduced**" and cae[6].endswith("Ours fall outside for anomalies caught.")
    report = (tmp_path / "articles.md").read_text()
    assert "9_broken`: failed" in report


def test_article002_latent_svm_must_beat_the_pixel_svm_for_every_seed(articles, tmp_path):
    runs = tmp_path / "runs"
    for seed, auroc in zip((0, 1, 2), (0.185, 0.805, 0.724)):
        fake_run(
            runs,
            "article002_ae_ocsvm_vs_ocsvm",
            seed,
            "article002_ae_ocsvm",
            auroc=auroc,
            detector={"code_dims_constant": int(seed == 0)},
        )
        fake_run(runs, "article002_ae_ocsvm_vs_ocsvm", seed, "ocsvm", auroc=0.51)
    row = row_of(claim_rows(articles, runs, tmp_path), "002", "")
    assert row[4].startswith(
        "AUROC latent SVM (article's model) 57.1 ± 33.7 % (seeds 0, 1, 2); pixel SVM 51.0 ± 0.0 % (seeds 0, 1, 2)"
    )
    assert row[5] == "**not reproduced**"
    assert "for 2 of 3 seeds (seed 0: 18.5 with a dead code unit, seed 1: 80.5, seed 2: 72.4" in row[6]


def test_time_is_the_runs_own_time_plus_what_each_sweep_costs_beyond_them(articles, tmp_path):
    runs = tmp_path / "runs"
    label = "article003_digits1to9_vs_0"
    # seed 0 ran before the last invocation (resumed), seeds 1 and 2 in it: 100 s - (70 + 20) s = 10 s of start-up
    for seed, (started, total) in enumerate((("07:00:00", 60.0), ("08:00:10", 70.0), ("08:01:30", 20.0))):
        fake_run(runs, label, seed, "dense_ae_128", total=total, started_at=f"2026-11-26T{started}+00:00")
    (runs / label / "benchmark.json").write_text(
        json.dumps(
            {
                "command": [
                    "anomaly_bench",
                    "-m",
                    f"experiment={label}",
                    f"hydra.sweep.dir={runs / label}",
                    "resume=true",
                ],
                "started_at": "2026-11-26T08:00:00+00:00",
                "wall_seconds": 100.0,
                "exit_code": 0,
                "load_average_before": 1.5,
                "load_average_after": 3.25,
                "cpu_count": 2,
            }
        )
    )
    completed, _ = articles.read_runs(runs)
    assert articles.start_up_seconds(completed, articles.benchmark_sweeps.read_benchmark_files(runs)) == [10.0]
    (line,) = articles.time_lines(completed, runs)
    assert line.startswith("**Time:** the 3 completed runs took 2 min of run time together")
    assert "(1-minute load average 1.5-3.2 when the sweeps started and ended)" in line
    assert "each of the 10 sweeps costs about 10 s per invocation" in line and "takes about 4 min." in line


def test_anogan_accuracy_and_the_oracle_accuracy_from_the_scores(articles, tmp_path):
    runs = tmp_path / "runs"
    folder = fake_run(runs, "article004_anogan", 0, "anogan", auroc=0.99, accuracy=0.96, scores=False)
    # best cut: between 2 and 5 -> 5 of 6 right (the normal image scored 7 is on the wrong side)
    pd.DataFrame(
        {
            "index": range(6),
            "label": [0, 0, 0, 1, 1, 1],
            "class": [1, 1, 1, 9, 9, 9],
            "score": [1, 2, 7, 5, 8, 9],
            "flagged": 0,
        }
    ).to_csv(folder / "scores.csv", index=False)
    assert articles.best_accuracy(folder) == pytest.approx(5 / 6)
    row = row_of(claim_rows(articles, runs, tmp_path), "004", "今回の場合")
    assert row[4] == (
        "accuracy 96.0 % (seed 0) at the 95th percentile of held-out 1s; 83.3 % (seed 0) at the best "
        "threshold on the test scores; AUROC 99.0 % (seed 0)"
    )
    assert row[5] == "**reproduced**"


def test_deviation_placeholders_take_the_runs_config_and_metrics(articles):
    run = pd.Series({"config": {"dataset.val_fraction": 0.2, "trainer.epochs": 10.0}, "threshold": 53.76256, "seed": 0})
    assert (
        articles.fill(
            "{dataset.val_fraction:%} held out, {trainer.epochs} epochs, {threshold} (seed {seed}), {model.unknown}",
            run,
        )
        == "20 % held out, 10 epochs, 53.76 (seed 0), ?"
    )
    assert articles.fill("{dataset.val_fraction}", None) == "?"


def test_without_runs_every_claim_says_not_run(articles, tmp_path):
    rows = claim_rows(articles, tmp_path / "no_runs", tmp_path)
    assert len(rows) == len(articles.CLAIMS) and {r[5] for r in rows} == {"**not run**"}
    assert "**Time:** no completed run yet." in (tmp_path / "articles.md").read_text()
