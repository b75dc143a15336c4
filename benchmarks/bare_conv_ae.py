"""The reference for the overhead benchmark: a bare Keras script doing the runner's work.

Same data (Fashion-MNIST, one normal class, 10 % of its training images for validation),
same model (the 4,385-parameter conv AE), same training (adam 1e-3, the runner's default batch size, binary
cross-entropy, validation loss per epoch), same scoring (per-image MSE on the official test
set, AUROC). No config, no checks, no plots, no saved model.

    python benchmarks/bare_conv_ae.py <fashion-mnist IDX folder> <normal class> <epochs> <batch size>
"""

import gzip
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import numpy as np
from keras import layers
from sklearn.metrics import roc_auc_score


def idx(path):
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main(folder, normal, epochs, batch_size):
    start = time.perf_counter()
    keras.utils.set_random_seed(0)
    x_train = idx(f"{folder}/train-images-idx3-ubyte.gz")
    y_train = idx(f"{folder}/train-labels-idx1-ubyte.gz")
    x_test = idx(f"{folder}/t10k-images-idx3-ubyte.gz").astype("float32")[..., None] / 255.0
    y_test = idx(f"{folder}/t10k-labels-idx1-ubyte.gz")
    normal_images = x_train[y_train == normal].astype("float32")[..., None] / 255.0
    normal_images = np.random.default_rng(0).permutation(normal_images)
    n_val = round(0.1 * len(normal_images))
    val, train = normal_images[:n_val], normal_images[n_val:]

    inputs = keras.Input((28, 28, 1))
    x = inputs
    for filters in (16, 8, 8):
        x = layers.Conv2D(filters, 3, activation="relu", padding="same")(x)
        x = layers.MaxPooling2D(2, padding="same")(x)
    for filters, padding in ((8, "same"), (8, "same"), (16, "valid")):
        x = layers.Conv2D(filters, 3, activation="relu", padding=padding)(x)
        x = layers.UpSampling2D(2)(x)
    outputs = layers.Conv2D(1, 3, activation="sigmoid", padding="same")(x)
    model = keras.Model(inputs, outputs)
    assert model.count_params() == 4385
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    model.fit(train, train, epochs=epochs, batch_size=batch_size, validation_data=(val, val), verbose=2)

    reconstructions = model.predict(x_test, batch_size=1024, verbose=0)
    scores = np.mean((x_test - reconstructions).reshape(len(x_test), -1) ** 2, axis=1)
    auroc = roc_auc_score((y_test != normal).astype(int), scores)
    print(f"bare: auroc {auroc:.4f} in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
