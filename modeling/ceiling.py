"""The achievable accuracy: simple classifiers on the true scene attributes.

An image model cannot beat a classifier that sees the scene parameters the images were
rendered from, so its test accuracy next to this ceiling says how close it got. Both a
logistic regression and gradient boosting are fitted on the train split's attributes
(yaw as sine and cosine: it is an angle) and scored on the test split; the ceiling is
the better of the two.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from generator.attributes import CONTINUOUS
from generator.dataset import DatasetFolder


def attribute_features(params: pd.DataFrame) -> np.ndarray:
    """(N, F) features of the scene attributes other than the label."""
    columns = [
        params[name].to_numpy(dtype=float) for name in CONTINUOUS if name != "obj_rotation_yaw"
    ]
    yaw = params["obj_rotation_yaw"].to_numpy(dtype=float)
    columns += [np.sin(yaw), np.cos(yaw), params["fliplr"].to_numpy(dtype=float)]
    return np.stack(columns, axis=1)


def ceiling_accuracy(
    folder: DatasetFolder, train_split: str = "train", test_split: str = "test", seed: int = 0
) -> dict[str, float]:
    """Test accuracy of each attribute classifier and the best of them (``ceiling``)."""
    train = folder.split(train_split).params
    test = folder.split(test_split).params
    x_train, y_train = attribute_features(train), train["label"].to_numpy()
    x_test, y_test = attribute_features(test), test["label"].to_numpy()
    models = {
        "logistic_regression": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        "gradient_boosting": HistGradientBoostingClassifier(random_state=seed),
    }
    scores = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        scores[name] = float((model.predict(x_test) == y_test).mean())
    scores["ceiling"] = max(scores.values())
    return scores
