"""Several detectors voting: their anomaly scores, standardised on normal images, combined.

Detectors fail on different images: a nearest-neighbour distance on pixels ranks digits
that look the same under rotation (0, 1, 8) well, where a transformation classifier is
blind, and the classifier catches shape errors the pixel distance misses. Their raw
scores live on unrelated scales, so each member's score is standardised by the mean and
standard deviation of its scores on the *validation* images (held-out normal training
images, never test data): z = (score - mean) / std, i.e. "how many normal spreads above
normal". The ensemble score is the mean (or max) of the members' z. Nothing is tuned on
anomalies, so the combination is as honest as its members.

Files: every member saves into ``members/<name>/`` of the run folder (as it would on its
own), ``ensemble.json`` keeps the member names and their standardisation, and
``member_scores.csv`` holds each member's standardised test scores, so a run shows whether
the ensemble beat its members (their test AUROCs are also logged).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly_bench.config import TrainerConfig
from anomaly_bench.data.split import Splits
from anomaly_bench.errors import ConfigError
from anomaly_bench.metrics import ranking_metrics
from anomaly_bench.models.base import Detector, FitResult, TrainingData

COMBINE = ("mean", "max")
ENSEMBLE_FILE = "ensemble.json"
MEMBERS_FOLDER = "members"
MEMBER_SCORES_FILE = "member_scores.csv"
REMEMBERED = 3  # score sets of a run: test, validation, training
log = logging.getLogger("anomaly_bench")


def standardisation(scores: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of normal scores; a zero spread (constant scores) counts as 1."""
    mean, std = float(np.mean(scores)), float(np.std(scores))
    return mean, std if std > 0 else 1.0


def merge_histories(histories: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One table, one row per epoch, member columns prefixed (``transform_classifier/loss``)."""
    merged = pd.DataFrame(columns=["epoch"])
    for name, history in histories.items():
        if not len(history):
            continue
        renamed = history.rename(columns={c: f"{name}/{c}" for c in history.columns if c != "epoch"})
        merged = merged.merge(renamed, on="epoch", how="outer") if len(merged) else renamed
    return merged


class ScoreEnsemble(Detector):
    """Mean (or max) of the members' anomaly scores, each standardised on the validation images."""

    needs_validation = True

    def __init__(self, name: str, members: dict[str, Detector], combine: str = "mean") -> None:
        super().__init__(name)
        self.members = dict(members or {})
        self.combine = combine
        self.scale: dict[str, tuple[float, float]] = {}
        # ((shape, content hash), member z-scores) of the last REMEMBERED score() calls: the pipeline
        # scores the test set, then the threshold's score sets, and member_scores.csv reuses the test
        # pass instead of running every member again. Images are recognised by content, as each split
        # hands out a fresh float array. Older entries are dropped, so scoring batch after batch
        # (anomaly-bench-predict) keeps memory bounded.
        self._scored: list[tuple[tuple, dict[str, np.ndarray]]] = []

    @property
    def supervision(self) -> str:  # type: ignore[override]
        kinds = {m.supervision for m in self.members.values() if isinstance(m, Detector)}
        return "supervised" if "supervised" in kinds else "unsupervised"

    @property
    def trains_by_epochs(self) -> bool:  # type: ignore[override]
        return any(m.trains_by_epochs for m in self._detectors())

    @property
    def unused_settings(self) -> tuple[str, ...]:
        """What no member reads: a setting that one member trains with changes the ensemble."""
        members = [m.unused_settings for m in self._detectors()]
        return tuple(s for s in members[0] if all(s in other for other in members[1:])) if members else ()

    def _detectors(self) -> list[Detector]:
        return [m for m in self.members.values() if isinstance(m, Detector)]

    def check_settings(self) -> None:
        if len(self.members) < 2:
            raise ConfigError(
                f"model.members has {len(self.members)} detector(s); an ensemble needs at least 2, "
                "e.g. +model@model.members.pca=pca"
            )
        for key, member in self.members.items():
            if not isinstance(member, Detector):
                raise ConfigError(
                    f"model.members.{key} must be a model config with a _target_ detector "
                    f"(e.g. +model@model.members.{key}=knn); got {type(member).__name__}"
                )
        self._each_member("check_settings")
        if self.combine not in COMBINE:
            raise ConfigError(f"model.combine={self.combine!r} is not allowed; choose one of: {', '.join(COMBINE)}")

    def check_shape(self, image_shape: tuple[int, ...]) -> None:
        self._each_member("check_shape", image_shape)

    def _each_member(self, method: str, *args) -> None:
        """Call a check on every member; members word their errors as top-level model.<key>."""
        for key, member in self.members.items():
            try:
                getattr(member, method)(*args)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("model.", f"model.members.{key}.")) from None

    def check_data(self, splits: Splits) -> None:
        if len(splits.val.normal) < 2:
            raise ConfigError(
                f"model={self.name} standardises its members on validation images; "
                "set dataset.val_fraction so at least 2 normal images are held out"
            )
        self._each_member("check_data", splits)

    def fit(self, splits: TrainingData, trainer: TrainerConfig) -> FitResult:
        normal_val = splits.val.normal.x
        histories, info = {}, {}
        for key, member in self.members.items():
            log.info("ensemble member %s: fitting", key)
            if self.run_dir is not None:
                member.run_dir = self.run_dir / MEMBERS_FOLDER / key
                member.run_dir.mkdir(parents=True, exist_ok=True)
            fit = member.fit(splits, trainer)
            histories[key] = fit.history
            self.scale[key] = standardisation(member.score(normal_val))
            info[key] = {**fit.info, "val_mean": self.scale[key][0], "val_std": self.scale[key][1]}
        return FitResult(history=merge_histories(histories), info={"member_fit": info})

    def member_scores(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Each member's standardised score (z over the normal validation images)."""
        return {
            key: (member.score(images) - self.scale[key][0]) / self.scale[key][1]
            for key, member in self.members.items()
        }

    def _member_scores_of(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Scores of the same images are computed once (the test set is scored, then written per member);
        images are recognised by content, as each split hands out a fresh float array."""
        key = (images.shape, hashlib.sha1(np.ascontiguousarray(images).data).hexdigest())
        for seen, z in self._scored:
            if seen == key:
                return z
        z = self.member_scores(images)
        self._scored = [*self._scored[-(REMEMBERED - 1) :], (key, z)]
        return z

    def score(self, images: np.ndarray) -> np.ndarray:
        z = np.stack(list(self._member_scores_of(images).values()))
        return z.mean(axis=0) if self.combine == "mean" else z.max(axis=0)

    def write_extra_artifacts(self, folder: Path, splits: Splits, test_scores: np.ndarray) -> list[str]:
        test = splits.test
        z = self._member_scores_of(test.x)
        columns = {f"z_{key}": scores for key, scores in z.items()}
        pd.DataFrame(
            {"index": test.index, "label": test.labels, "class": test.classes, **columns, "ensemble": test_scores}
        ).to_csv(folder / MEMBER_SCORES_FILE, index=False)
        for key, scores in z.items():
            auroc = ranking_metrics(test.labels, scores)["auroc"]
            log.info("ensemble member %s: test auroc %s", key, "n/a" if auroc is None else f"{auroc:.4f}")
        return [MEMBER_SCORES_FILE]

    def save(self, folder: Path) -> list[str]:
        written = []
        for key, member in self.members.items():
            target = Path(folder) / MEMBERS_FOLDER / key
            target.mkdir(parents=True, exist_ok=True)
            written += [f"{MEMBERS_FOLDER}/{key}/{name}" for name in member.save(target)]
        (Path(folder) / ENSEMBLE_FILE).write_text(
            json.dumps(
                {
                    "combine": self.combine,
                    "members": {key: {"val_mean": mean, "val_std": std} for key, (mean, std) in self.scale.items()},
                },
                indent=2,
            )
        )
        return [ENSEMBLE_FILE, *written]

    def load(self, folder: Path) -> None:
        saved = json.loads((Path(folder) / ENSEMBLE_FILE).read_text())["members"]
        if set(saved) != set(self.members):
            raise ConfigError(
                f"{Path(folder) / ENSEMBLE_FILE} lists members {sorted(saved)}, the config {sorted(self.members)}"
            )
        for key, member in self.members.items():
            member.load(Path(folder) / MEMBERS_FOLDER / key)
            self.scale[key] = (float(saved[key]["val_mean"]), float(saved[key]["val_std"]))
        self._scored = []

    def describe(self) -> dict:
        members = {key: member.describe() for key, member in self.members.items()}
        counts = [int(n) for d in members.values() if (n := d.get("n_params")) is not None]
        return {
            **super().describe(),
            "combine": self.combine,
            "members": members,
            "n_params": int(sum(counts)) if counts else None,
        }
