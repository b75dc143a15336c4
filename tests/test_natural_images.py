"""Colour photos: the natural_images preset (rotation prediction with a residual network) on a
CIFAR-10 subset, and every deep model of the zoo learning on 32 x 32 RGB images."""

import os

import keras
import pytest
from conftest import DATA_ROOT, compose_config, has_dataset
from hydra.utils import instantiate
from image_data import fashion_folder

from anomaly_bench.data import load_raw
from anomaly_bench.run import run

CIFAR_JPEG = DATA_ROOT / "cifar10"
needs_cifar_jpeg = pytest.mark.skipif(
    not (CIFAR_JPEG / "train" / "airplane").is_dir(), reason=f"CIFAR-10 JPEG folders not found under {DATA_ROOT}"
)


@pytest.fixture(scope="module")
def cifar_subset(tmp_path_factory):
    """ROOT/{train,test}/<class>/ with links to 150 training airplanes, 30 training images of two
    other classes (held-out validation anomalies) and 40 test images of each of the three."""
    root = tmp_path_factory.mktemp("cifar_subset")
    for part, counts in (
        ("train", {"airplane": 150, "automobile": 30, "frog": 30}),
        ("test", dict.fromkeys(("airplane", "automobile", "frog"), 40)),
    ):
        for name, n in counts.items():
            (root / part / name).mkdir(parents=True)
            for source in sorted((CIFAR_JPEG / part / name).glob("*.jpg"))[:n]:
                os.symlink(source, root / part / name / source.name)
    return root


def test_the_preset_builds_a_residual_network_that_loads_in_safe_mode(tmp_path):
    detector = instantiate(compose_config(["experiment=natural_images"]).model, _convert_="all")
    detector.check((32, 32, 3))
    detector.model.save(tmp_path / "model.keras")
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert sum(isinstance(layer, keras.layers.Add) for layer in model.layers) == 3
    # Two of the three blocks change the channel count, so their shortcut is a 1 x 1 convolution.
    assert sum(isinstance(layer, keras.layers.Conv2D) and layer.kernel_size == (1, 1) for layer in model.layers) == 2
    assert model.output.shape[-1] == 4 and model.count_params() == detector.model.count_params()


@pytest.mark.slow
@needs_cifar_jpeg
def test_natural_images_preset_runs_on_cifar_photos_and_reloads_in_safe_mode(cifar_subset, tmp_path):
    cfg = compose_config(
        [
            "experiment=natural_images",
            "dataset=folder",
            f"dataset.path={cifar_subset}",
            "dataset.normal_classes=[airplane]",
            "trainer.epochs=1",
        ]
    )
    metrics = run(cfg, tmp_path)
    assert metrics["status"] == "completed" and metrics["data"]["image_shape"] == [32, 32, 3]
    assert (metrics["n_transforms"], metrics["tta"], metrics["augment_flip"]) == (4, "flip_shift", True)
    assert metrics["val_auroc"] is not None and metrics["n_test"] == 120
    model = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    assert model.output.shape[-1] == 4 and any(isinstance(layer, keras.layers.Add) for layer in model.layers)


@pytest.fixture(scope="module")
def tinted_fashion(tmp_path_factory):
    if not has_dataset("fashion-mnist"):
        pytest.skip("Fashion-MNIST IDX files not found")
    root = tmp_path_factory.mktemp("tinted_fashion")
    fashion_folder(root, load_raw("fashion_mnist", "env"), 300, 60)
    return root


@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [
        ["model=vae", "trainer.epochs=3"],
        ["model=deep_svdd", "trainer.epochs=3"],
        ["model=anogan", "model.scoring=encoder", "trainer.epochs=30", "model.encoder_epochs=10", "threshold=fixed"],
        ["model=transform_classifier", "trainer.epochs=3"],
        ["experiment=natural_images", "trainer.epochs=2"],
    ],
    ids=["vae", "deep_svdd", "anogan", "transform_classifier", "natural_images"],
)
def test_deep_models_learn_on_32x32_rgb(tinted_fashion, tmp_path, overrides):
    """Trousers normal, the nine other garments anomalous, as tinted 32 x 32 RGB PNGs: far above chance."""
    cfg = compose_config(
        [
            "dataset=folder",
            f"dataset.path={tinted_fashion}",
            "dataset.normal_classes=[trouser]",
            "trainer.batch_size=64",
            *overrides,
        ]
    )
    metrics = run(cfg, tmp_path)
    assert metrics["data"]["image_shape"] == [32, 32, 3]
    assert metrics["auroc"] > 0.75, metrics["auroc"]
