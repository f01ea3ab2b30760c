"""Champion/challenger agreement per chunk, from the prediction log.

Per chunk, on the records the champion answered (the challenger in shadow): how many the
challenger scored (status ``ok``), on those the share where both models give the same label and
the mean absolute difference of their probabilities, and how many records the challenger did not
score, by status (``shed``, ``failed``, ``sampled_out``, ``disabled``, ``skipped``; see
docs/prediction_log.md). A falling agreement rate with stable inputs is a sign that the two
models read the same data differently; a rising ``shed`` or ``failed`` count is an operations
problem, not drift.

Records the challenger answered as the canary (``model_variant = challenger``) are counted
apart: ``n_canary`` and, on them, ``canary_agreement_rate`` and
``canary_mean_abs_probability_diff`` (the champion scored them too). A log without the
``model_variant`` column was answered by the champion throughout.

Built from sums like the other drift statistics: ``count_agreement`` per partition, partitions
added with ``merge_agreement`` (rows matched by chunk), then ``agreement_table`` for the rates.

Plain pandas; does not import Kedro.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from shadowdrift.drift_chunks import factorize_chunk_key
from shadowdrift.prediction_log import (
    CHALLENGER_LABEL,
    CHALLENGER_PROBABILITY,
    CHALLENGER_STATUS,
    CHALLENGER_STATUSES,
    CHAMPION_LABEL,
    CHAMPION_PROBABILITY,
    answered_by_challenger,
)

REQUIRED_COLUMNS = (
    CHAMPION_PROBABILITY,
    CHAMPION_LABEL,
    CHALLENGER_STATUS,
    CHALLENGER_PROBABILITY,
    CHALLENGER_LABEL,
)
_STATUS_COUNTS = tuple(f"n_{status}" for status in CHALLENGER_STATUSES)
_CANARY_COUNTS = (
    "n_canary",
    "n_canary_compared",
    "n_canary_agree",
    "sum_canary_abs_probability_diff",
)
COUNT_COLUMNS = (
    "n_rows",
    "n_compared",
    "n_agree",
    "sum_abs_probability_diff",
    *_STATUS_COUNTS,
    *_CANARY_COUNTS,
)
AGREEMENT_COLUMNS = (
    "chunk",
    "n_rows",
    "n_compared",
    "agreement_rate",
    "mean_abs_probability_diff",
    "challenger_coverage",
    *_STATUS_COUNTS,
    "n_canary",
    "canary_agreement_rate",
    "canary_mean_abs_probability_diff",
)


class AgreementError(ValueError):
    """The frame lacks a prediction-log column or holds an unknown challenger status."""


def count_agreement(
    frame: pd.DataFrame, chunk_key: np.ndarray | pd.Series | Sequence[Any]
) -> pd.DataFrame:
    """Sums per chunk (index ``chunk``, columns ``COUNT_COLUMNS``); ``chunk_key`` labels each row.

    A record is *compared* when its status is ``ok`` and both labels and probabilities are set;
    the shadow's sums (``n_compared``, ``n_agree``, statuses) count the records the champion
    answered, the ``canary`` sums those the challenger answered.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise AgreementError(
            f"the analysis frame lacks prediction-log column(s) {', '.join(map(repr, missing))}"
        )
    try:
        codes, labels = factorize_chunk_key(chunk_key, len(frame), sort=False)
    except ValueError as exc:
        raise AgreementError(str(exc)) from exc
    # One hash pass over the statuses and one over the chunk labels; everything else is
    # comparisons of small integer codes and bincounts (no DataFrame groupby).
    status_codes, statuses = pd.factorize(
        frame[CHALLENGER_STATUS].to_numpy(dtype=object), use_na_sentinel=False
    )
    status_index = {status: i for i, status in enumerate(statuses)}
    unknown = sorted(set(status_index) - set(CHALLENGER_STATUSES), key=str)
    if unknown:
        raise AgreementError(
            f"column {CHALLENGER_STATUS!r} has unknown value(s) {unknown}; allowed: "
            f"{', '.join(CHALLENGER_STATUSES)}"
        )
    n_chunks = len(labels)
    champion_p = frame[CHAMPION_PROBABILITY].to_numpy(dtype=np.float64, na_value=np.nan)
    challenger_p = frame[CHALLENGER_PROBABILITY].to_numpy(dtype=np.float64, na_value=np.nan)
    champion_y = frame[CHAMPION_LABEL].to_numpy(dtype=np.float64, na_value=np.nan)
    challenger_y = frame[CHALLENGER_LABEL].to_numpy(dtype=np.float64, na_value=np.nan)
    scored = (
        (status_codes == status_index.get("ok", -1))
        & ~np.isnan(champion_p)
        & ~np.isnan(challenger_p)
        & ~np.isnan(champion_y)
        & ~np.isnan(challenger_y)
    )
    canary = answered_by_challenger(frame)
    agree = champion_y == challenger_y
    difference = np.where(scored, np.abs(champion_p - challenger_p), 0.0)

    def per_chunk(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes[mask], minlength=n_chunks).astype(np.int64)

    def summed(mask: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=np.where(mask, difference, 0.0), minlength=n_chunks)

    shadow = ~canary
    sums: dict[str, np.ndarray] = {
        "n_rows": np.bincount(codes, minlength=n_chunks).astype(np.int64),
        "n_compared": per_chunk(scored & shadow),
        "n_agree": per_chunk(scored & shadow & agree),
        "sum_abs_probability_diff": summed(scored & shadow),
        "n_canary": per_chunk(canary),
        "n_canary_compared": per_chunk(scored & canary),
        "n_canary_agree": per_chunk(scored & canary & agree),
        "sum_canary_abs_probability_diff": summed(scored & canary),
    }
    for status in CHALLENGER_STATUSES:
        # a status absent from the frame has no code: -1 matches no row
        sums[f"n_{status}"] = per_chunk(shadow & (status_codes == status_index.get(status, -1)))
    return pd.DataFrame(sums, index=pd.Index(labels, name="chunk"))[list(COUNT_COLUMNS)]


def merge_agreement(parts: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Add the sums of disjoint partitions, chunk by chunk."""
    parts = list(parts)
    if not parts:
        raise AgreementError("merge_agreement needs at least one table of sums")
    return pd.concat(parts).groupby(level=0, sort=False).sum()


def agreement_table(counts: pd.DataFrame, chunk_order: Sequence[Any] | None = None) -> pd.DataFrame:
    """Rates per chunk (columns ``AGREEMENT_COLUMNS``); NaN rates where nothing was compared."""
    if chunk_order is not None:
        unknown = [c for c in chunk_order if c not in counts.index]
        if unknown:
            raise AgreementError(f"chunks {unknown} have no agreement counts")
        counts = counts.loc[list(chunk_order)]
    compared = counts["n_compared"].to_numpy(dtype=np.float64)
    canary = counts["n_canary_compared"].to_numpy(dtype=np.float64)
    shadow_rows = (counts["n_rows"] - counts["n_canary"]).to_numpy(dtype=np.float64)
    out = pd.DataFrame(
        {
            "chunk": counts.index.to_numpy(dtype=object),
            "n_rows": counts["n_rows"].to_numpy(dtype=np.int64),
            "n_compared": counts["n_compared"].to_numpy(dtype=np.int64),
            "agreement_rate": _rate(counts["n_agree"], compared),
            "mean_abs_probability_diff": _rate(counts["sum_abs_probability_diff"], compared),
            "challenger_coverage": _rate(compared, shadow_rows),
            **{c: counts[c].to_numpy(dtype=np.int64) for c in _STATUS_COUNTS},
            "n_canary": counts["n_canary"].to_numpy(dtype=np.int64),
            "canary_agreement_rate": _rate(counts["n_canary_agree"], canary),
            "canary_mean_abs_probability_diff": _rate(
                counts["sum_canary_abs_probability_diff"], canary
            ),
        }
    )
    return out.reset_index(drop=True)


def _rate(numerator: Any, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0."""
    values = np.asarray(numerator, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, values / denominator, np.nan)
