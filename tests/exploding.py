"""A detector that fails mid-training, to test what a failed run leaves behind."""

from anomaly_bench.models.autoencoder import ReconstructionDetector


class ExplodingDetector(ReconstructionDetector):
    def fit(self, splits, trainer):
        raise RuntimeError("boom: simulated failure mid-training")
