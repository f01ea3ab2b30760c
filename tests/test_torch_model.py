"""The challenger network: learning, determinism, unknown categories, early stopping, pickling."""

from __future__ import annotations

import pickle

import cloudpickle
import numpy as np
import pytest
import torch
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline

from shadowdrift.preprocessing import build_preprocessor
from shadowdrift.simulation import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    TARGET_COLUMN,
    simulate_history,
)
from shadowdrift.torch_model import TorchTabularClassifier, default_embedding_dim

CATEGORY_EFFECT = np.array([-1.5, -0.5, 0.5, 1.5])
# Small and single-threaded so that every fit takes a fraction of a second.
FAST = {"hidden_sizes": (16, 8), "batch_size": 128, "max_epochs": 15, "num_threads": 1}


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns: x0 (signal), x1 (noise), a category code whose effect adds to x0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    category = rng.integers(0, len(CATEGORY_EFFECT), size=n)
    y = (x[:, 0] + CATEGORY_EFFECT[category] > 0).astype(int)
    return np.column_stack([x, category.astype(float)]), y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return make_data(1500, seed=1)


@pytest.fixture(scope="module")
def fitted(data) -> TorchTabularClassifier:
    X, y = data
    return TorchTabularClassifier(n_numeric=2, random_state=0, **FAST).fit(X, y)


def test_learns_a_numeric_plus_category_rule(fitted):
    X_test, y_test = make_data(1000, seed=2)
    assert roc_auc_score(y_test, fitted.predict_proba(X_test)[:, 1]) > 0.95
    assert fitted.cardinalities_ == [4]
    assert fitted.embedding_dims_ == [default_embedding_dim(4)] == [3]


def test_probabilities_are_float64_rows_summing_to_one_and_predict_thresholds_them(fitted):
    X, _ = make_data(200, seed=3)
    proba = fitted.predict_proba(X)
    assert proba.shape == (200, 2)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(fitted.classes_, np.array([0, 1]))
    np.testing.assert_array_equal(fitted.predict(X), (proba[:, 1] >= 0.5).astype(int))
    assert fitted.predict_proba(X[:1]).shape == (1, 2)
    assert is_classifier(fitted)


def test_same_seed_gives_identical_predictions_and_another_seed_does_not(data):
    X, y = data
    first = TorchTabularClassifier(n_numeric=2, random_state=7, **FAST).fit(X, y)
    second = TorchTabularClassifier(n_numeric=2, random_state=7, **FAST).fit(X, y)
    other = TorchTabularClassifier(n_numeric=2, random_state=8, **FAST).fit(X, y)
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    assert first.train_loss_curve_ == second.train_loss_curve_
    assert not np.array_equal(first.predict_proba(X), other.predict_proba(X))


def test_fit_leaves_the_global_torch_rng_and_thread_count_alone(data):
    X, y = data
    threads = torch.get_num_threads()
    rng_state = torch.random.get_rng_state()
    TorchTabularClassifier(n_numeric=2, **{**FAST, "max_epochs": 1}).fit(X, y)
    assert torch.equal(torch.random.get_rng_state(), rng_state)
    assert torch.get_num_threads() == threads


def test_unseen_missing_and_nan_categories_give_finite_probabilities(fitted):
    X, _ = make_data(3, seed=4)
    X[:, 2] = [9.0, -1.0, np.nan]  # unseen code, the preprocessor's missing code, raw NaN
    proba = fitted.predict_proba(X)
    assert np.isfinite(proba).all()
    # All three share the reserved "unknown" embedding, so with equal x0 and x1 they score
    # alike (up to float32 rounding, which can depend on a row's position in the batch).
    X[:, :2] = X[0, :2]
    proba = fitted.predict_proba(X)[:, 1]
    assert proba == pytest.approx(np.full(3, proba[0]), rel=1e-6)
    known = X[:1].copy()
    known[0, 2] = 0.0
    assert fitted.predict_proba(known)[0, 1] != pytest.approx(proba[0], rel=1e-3)


def test_early_stopping_on_noise_stops_early_and_keeps_the_best_weights():
    rng = np.random.default_rng(5)
    X = np.column_stack([rng.normal(size=(1500, 3)), rng.integers(0, 5, size=1500)])
    y = rng.integers(0, 2, size=1500)
    model = TorchTabularClassifier(
        n_numeric=3,
        hidden_sizes=(64, 64),
        learning_rate=1e-2,
        max_epochs=60,
        patience=3,
        num_threads=1,
        dropout=0.0,
    ).fit(X, y)
    assert model.n_epochs_ < 60
    assert model.n_epochs_ == model.best_epoch_ + model.patience
    assert len(model.validation_loss_curve_) == len(model.train_loss_curve_) == model.n_epochs_

    # The kept weights are the best epoch's: recompute its validation loss on the last 15%.
    n_val = round(0.15 * len(X))
    proba = model.predict_proba(X[-n_val:])
    recomputed = log_loss(y[-n_val:], proba[:, 1], labels=[0, 1])
    assert recomputed == pytest.approx(
        model.validation_loss_curve_[model.best_epoch_ - 1], abs=1e-5
    )
    assert model.best_validation_loss_ == pytest.approx(recomputed, abs=1e-5)
    assert model.validation_loss_curve_[-1] > model.best_validation_loss_


def test_without_a_validation_slice_it_trains_every_epoch(data):
    X, y = data
    model = TorchTabularClassifier(
        n_numeric=2, validation_fraction=0.0, **{**FAST, "max_epochs": 3}
    ).fit(X, y)
    assert model.n_epochs_ == model.best_epoch_ == 3
    assert model.validation_loss_curve_ == []
    assert model.best_validation_loss_ is None


def test_clone_and_pickle_round_trips_keep_predictions(fitted, data):
    X, y = data
    unfitted = clone(fitted)
    assert unfitted.get_params() == fitted.get_params()
    assert not hasattr(unfitted, "network_")
    np.testing.assert_array_equal(unfitted.fit(X, y).predict_proba(X), fitted.predict_proba(X))

    for module in (pickle, cloudpickle):
        restored = module.loads(module.dumps(fitted))
        np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    # Pickling must not strip the live network from the original.
    assert hasattr(fitted, "network_")


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            np.array([0, 1, 2] * 100),
            "Only binary classification is supported.*got a multiclass target with 3",
        ),
        (np.zeros(300, dtype=int), "exactly two classes, got .* with 1 distinct"),
        (np.linspace(0.0, 1.0, 300), "got a continuous target"),
        (np.array([0.0, 1.0, np.nan] * 100), "missing labels"),
    ],
)
def test_a_non_binary_target_is_rejected_with_a_clear_message(labels, message):
    X, _ = make_data(300, seed=6)
    with pytest.raises(ValueError, match=message):
        TorchTabularClassifier(n_numeric=2, **FAST).fit(X, labels)


def test_string_labels_map_to_classes(data):
    X, y = data
    labels = np.where(y == 1, "churn", "stay")
    model = TorchTabularClassifier(n_numeric=2, **{**FAST, "max_epochs": 2}).fit(X, labels)
    np.testing.assert_array_equal(model.classes_, ["churn", "stay"])
    assert set(model.predict(X)) <= {"churn", "stay"}


def test_bad_inputs_at_predict_time_fail_loudly(fitted):
    X, _ = make_data(5, seed=7)
    with pytest.raises(NotFittedError):
        TorchTabularClassifier(n_numeric=2).predict(X)
    with pytest.raises(ValueError, match="expecting 3 features"):
        fitted.predict_proba(X[:, :2])
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="impute"):
        fitted.predict_proba(X)


def test_a_pipeline_with_the_shared_preprocessor_fits_and_pickles():
    events, _ = simulate_history(1200, 11, "2024-01-01", 60, 7)
    features = list(NUMERIC_FEATURES + CATEGORICAL_FEATURES)
    pipeline = make_pipeline(
        build_preprocessor(list(NUMERIC_FEATURES), list(CATEGORICAL_FEATURES)),
        TorchTabularClassifier(n_numeric=len(NUMERIC_FEATURES), **FAST),
    ).fit(events[features], events[TARGET_COLUMN])
    unseen = events[features].iloc[:3].assign(payment_method="digital_wallet")
    unseen.loc[unseen.index[1], "contract_type"] = None
    restored = cloudpickle.loads(cloudpickle.dumps(pipeline))
    np.testing.assert_array_equal(restored.predict_proba(unseen), pipeline.predict_proba(unseen))
    assert np.isfinite(restored.predict_proba(unseen)).all()
