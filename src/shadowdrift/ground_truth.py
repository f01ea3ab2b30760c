"""Ground truth for logged predictions: labels posted to ``POST /feedback``, joined by request id.

The service writes labels to the ground-truth log (``shadowdrift.serving.feedback``); a label
names a ``request_id`` and either one ``record_index`` or, with a null index, every record of
that request. This module turns such labels into one label per prediction-log row. Plain pandas;
no Kedro import.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

REQUEST_ID = "request_id"
RECORD_INDEX = "record_index"
LABEL = "label"
RECEIVED_AT = "received_at"
FEEDBACK_COLUMNS = (REQUEST_ID, RECORD_INDEX, LABEL, RECEIVED_AT)


def _latest(labels: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    return labels.sort_values(RECEIVED_AT, kind="stable").drop_duplicates(keys, keep="last")


def feedback_labels(
    log: pd.DataFrame, feedback: pd.DataFrame, as_of: pd.Timestamp | None = None
) -> pd.Series:
    """Per row of ``log``, the label posted for it (float 0/1), NaN where none arrived.

    A label for one record and a label for the whole request may both exist: the one received
    last wins, as does the last of several labels for the same record. With ``as_of``, labels
    received after it are ignored (a past day analysed again sees what was known then).
    """
    missing = [c for c in FEEDBACK_COLUMNS if c not in feedback.columns]
    if missing:
        raise ValueError(
            f"ground-truth table lacks column(s) {', '.join(missing)}; "
            f"expected {', '.join(FEEDBACK_COLUMNS)} (docs/serving.md, POST /feedback)"
        )
    result = pd.Series(np.nan, index=log.index, dtype=float)
    if feedback.empty or log.empty:
        return result
    labels = feedback[list(FEEDBACK_COLUMNS)]
    if as_of is not None:
        labels = labels[labels[RECEIVED_AT] <= as_of]
    keys = pd.DataFrame(
        {
            REQUEST_ID: log[REQUEST_ID].astype(str).to_numpy(),
            RECORD_INDEX: log[RECORD_INDEX].astype("int64").to_numpy(),
        }
    )
    per_record = labels[labels[RECORD_INDEX].notna()].astype({RECORD_INDEX: "int64"})
    per_record = _latest(per_record, [REQUEST_ID, RECORD_INDEX])
    per_request = _latest(labels[labels[RECORD_INDEX].isna()], [REQUEST_ID])
    one = keys.merge(per_record, on=[REQUEST_ID, RECORD_INDEX], how="left")
    whole = keys.merge(per_request.drop(columns=RECORD_INDEX), on=REQUEST_ID, how="left")
    use_whole = whole[LABEL].notna() & (one[LABEL].isna() | (whole[RECEIVED_AT] > one[RECEIVED_AT]))
    chosen = one[LABEL].where(~use_whole, whole[LABEL]).astype(float)
    result[:] = chosen.to_numpy()
    return result
