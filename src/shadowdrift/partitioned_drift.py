"""Drift monitoring of a Dask DataFrame: the same tables and decision as ``drift_monitor``.

The baselines (``drift.baseline``) stay in memory: ``drift_monitor.fit_reference`` fits PSI
bins, baseline counts and the NannyML monitors on them exactly as the pandas path does. The analysis
(the prediction log with ground truth) stays partitioned:

* **Chunks.** Period chunks are a function of each row's time, so every partition labels its
  own rows. Size chunks need the global time order: the table is sorted on the workers by
  event time, ties broken by ``logged_at, request_id, record_index`` (the order the pandas
  path leaves them in), and each row's chunk is its global position // size.
* **PSI, data quality, agreement, labelled rows.** Every partition is counted per chunk
  (``PSIBinning.count_by_chunk``, ``count_quality``, ``count_agreement``); the integer counts
  are summed, so PSI and the data-quality rates are bit-for-bit the pandas path's. Agreement
  sums probability differences, equal up to float summation order (~1e-16).
* **NannyML** runs on the workers, one chunk at a time: the table is shuffled so that all the
  rows of a chunk share a partition, each partition is put in the pandas path's row order and
  the fitted monitors run on it. NannyML computes every chunk from its own rows and the
  reference only, so the result equals the single-process run (tests compare them).

Only per-chunk counts and NannyML's per-chunk rows travel to the client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shadowdrift.data_quality import QualityCounts, count_quality, merge_quality, quality_table
from shadowdrift.drift_agreement import REQUIRED_COLUMNS as AGREEMENT_COLUMNS
from shadowdrift.drift_agreement import agreement_table, count_agreement, merge_agreement
from shadowdrift.drift_chunks import (
    CHUNK_TABLE_COLUMNS,
    ChunkAssignment,
    assign_chunks,
    log_incomplete,
    normalise_timestamps,
)
from shadowdrift.drift_monitor import (
    DriftInputError,
    DriftResults,
    FittedReference,
    compute_drift,
    decide_from_tables,
    psi_table,
)
from shadowdrift.drift_params import ChunkingParams
from shadowdrift.frames import (
    ROW_POSITION,
    compute_together,
    partition_lengths,
    partition_offsets,
    partition_tasks,
    with_row_positions,
)
from shadowdrift.ground_truth import feedback_labels
from shadowdrift.nannyml_drift import (
    JUDGED,
    MULTIVARIATE_COLUMNS,
    PERFORMANCE_COLUMNS,
    UNIVARIATE_COLUMNS,
    FittedNannyML,
    NannyMLResults,
    run_nannyml,
)
from shadowdrift.prediction_log import (
    CHAMPION_PROBABILITY,
    EVENT_TIME,
    LOGGED_AT,
    RECORD_INDEX,
    REQUEST_ID,
)
from shadowdrift.psi import ChunkCounts
from shadowdrift.schema import DataSchema
from shadowdrift.value_types import label_numbers

if TYPE_CHECKING:
    import dask.dataframe as dd

logger = logging.getLogger(__name__)

CHUNK = "__shadowdrift_chunk"
_TIME = "__shadowdrift_time"
_LABEL = "__shadowdrift_label"
_KEY = "__shadowdrift_key"
# The order the pandas path leaves prediction-log rows in, after event time.
LOG_ORDER = (LOGGED_AT, REQUEST_ID, RECORD_INDEX)


# --- ground truth ------------------------------------------------------------------------------


def _latest(part: pd.DataFrame, id_column: str, order: list[str]) -> pd.DataFrame:
    return part.sort_values(order, kind="stable").drop_duplicates(id_column, keep="last")


def _with_feedback(
    part: pd.DataFrame, feedback: pd.DataFrame, target: str, as_of: pd.Timestamp | None
) -> pd.DataFrame:
    posted = feedback_labels(part, feedback, as_of)
    return part.assign(**{target: posted.fillna(part[target])})


def attach_ground_truth_partitioned(
    log: dd.DataFrame,
    raw_production: dd.DataFrame,
    feedback: pd.DataFrame,
    schema: DataSchema,
    drift_labels: dict[str, Any],
) -> dd.DataFrame:
    """``attach_ground_truth`` on Dask, lazily: latest score per id, target where it arrived.

    A record logged more than once keeps its latest row (by ``logged_at, request_id,
    record_index``, as the pandas path): the log is shuffled by id so each id's rows meet in
    one partition. Labels are joined by id (as text) from ``raw_production``; the newest event
    time (the default ``as_of``) is a lazy reduction, computed in the same pass. Labels posted
    to ``POST /feedback`` (a small pandas table, sent to every partition) win where both exist.
    Rows are not sorted (``compute_drift_partitioned`` orders what needs an order).
    """
    s = schema
    if s.id in log.columns:
        order = [c for c in LOG_ORDER if c in log.columns]
        log = log.shuffle(on=s.id).map_partitions(_latest, s.id, order, meta=log._meta)
    as_of_given = (
        pd.Timestamp(drift_labels["as_of"], tz="UTC") if drift_labels.get("as_of") else None
    )
    if s.target not in raw_production.columns or s.id not in log.columns:
        logger.info("raw_production has no %s column: labels come from feedback only", s.target)
        labelled = log.assign(**{s.target: np.nan})
    else:
        truth = raw_production[[s.id, s.target]]
        truth = truth.assign(
            **{
                _KEY: truth[s.id].astype(str),
                s.target: truth[s.target].map_partitions(
                    label_numbers, s.positive_class, meta=(s.target, "float64")
                ),
            }
        )[[_KEY, s.target]].rename(columns={s.target: _LABEL})
        joined = log.assign(**{_KEY: log[s.id].astype(str)}).merge(truth, on=_KEY, how="left")
        as_of = as_of_given if as_of_given is not None else joined["event_time"].max()
        delay = pd.Timedelta(days=float(drift_labels.get("delay_days", 0)))
        arrived = joined["event_time"] <= as_of - delay
        labels = joined[_LABEL].where(arrived).astype(float)
        labelled = joined.assign(**{s.target: labels}).drop(columns=[_KEY, _LABEL])
    logger.info(
        "Ground truth joined on the workers (%d feedback labels; raw_production as of %s, "
        "delay %s days); monitor_drift reports how many labels arrived",
        len(feedback),
        drift_labels.get("as_of") or "the newest event time",
        drift_labels.get("delay_days", 0),
    )
    if feedback.empty:
        return labelled
    return labelled.map_partitions(
        _with_feedback, feedback, s.target, as_of_given, meta=labelled._meta
    )


# --- per-partition counting ----------------------------------------------------------------------


@dataclass
class _Counts:
    """What one partition contributes: per-chunk counts, keyed by chunk label."""

    chunks: pd.DataFrame  # chunk, sort_key, start, end, n_rows, n_labelled
    psi: list[ChunkCounts] | None = None  # one per fitted.psi part
    quality: QualityCounts | None = None
    agreement: pd.DataFrame | None = None
    first_time: Any = None
    last_time: Any = None


@dataclass(frozen=True)
class _Chunking:
    """How rows get their chunk: ``size`` chunks use ``ROW_POSITION`` and the total row count."""

    timestamp: str
    target: str
    by: str
    size: int = 0
    n_rows: int = 0
    agreement: bool = True
    params: ChunkingParams | None = None


def _size_label(code: int, size: int, n_rows: int) -> str:
    first = code * size
    return f"[{first}:{min(first + size, n_rows) - 1}]"


def _chunk_rows(
    part: pd.DataFrame, chunking: _Chunking
) -> tuple[pd.Categorical, pd.DataFrame, pd.Series]:
    """The chunk of every row, as a Categorical over ``info``'s chunks; ``info``: one row per
    chunk (``chunk``, ``sort_key``, ``start``, ``end``), in the Categorical's code order; and
    the rows' timestamps, normalised (naive UTC).

    The counting functions take the Categorical by its codes; labelling rows with strings made
    each of them hash 400,000 labels again.
    """
    times = normalise_timestamps(part[chunking.timestamp], chunking.timestamp)
    if chunking.by == "size":
        global_codes = part[ROW_POSITION].to_numpy(dtype=np.int64) // chunking.size
        codes, chunk_numbers = pd.factorize(global_codes, sort=True)
        table = (
            pd.DataFrame({"code": codes, "time": times.to_numpy()})
            .groupby("code", sort=True)["time"]
            .agg(["min", "max"])
        )
        info = pd.DataFrame(
            {
                "chunk": [
                    _size_label(int(c), chunking.size, chunking.n_rows) for c in chunk_numbers
                ],
                "sort_key": chunk_numbers.astype(np.int64),
                "start": table["min"].to_numpy(),
                "end": table["max"].to_numpy(),
            }
        )
    else:
        assignment = assign_chunks(times, chunking.params, column=chunking.timestamp)
        codes, table = assignment.codes, assignment.table
        info = pd.DataFrame(
            {
                "chunk": table["chunk"].to_numpy(dtype=object),
                "sort_key": table["start"].to_numpy(),
                "start": table["start"].to_numpy(),
                "end": table["end"].to_numpy(),
            }
        )
    rows = pd.Categorical.from_codes(codes, categories=pd.Index(info["chunk"], dtype=object))
    return rows, info, times


def _partition_counts(
    part: pd.DataFrame, _number: int, fitted: FittedReference, chunking: _Chunking
) -> _Counts | None:
    if part.empty:
        return None
    rows, info, times = _chunk_rows(part, chunking)
    codes = rows.codes
    info["n_rows"] = np.bincount(codes, minlength=len(info)).astype(np.int64)
    if chunking.target in part.columns:
        labelled = part[chunking.target].notna().to_numpy()
        info["n_labelled"] = np.bincount(codes[labelled], minlength=len(info)).astype(np.int64)
    else:
        info["n_labelled"] = 0
    return _Counts(
        chunks=info,
        psi=[reference.binning.count_by_chunk(part, rows) for reference in fitted.psi],
        quality=count_quality(part, rows, fitted.schema),
        agreement=count_agreement(part, rows) if chunking.agreement else None,
        first_time=times.min(),
        last_time=times.max(),
    )


def _chunk_table(parts: list[_Counts], min_rows: int) -> pd.DataFrame:
    """The analysis chunk table (``CHUNK_TABLE_COLUMNS`` + ``n_labelled``), in time order."""
    rows = pd.concat([p.chunks for p in parts], ignore_index=True)
    merged = rows.groupby("chunk", sort=False).agg(
        sort_key=("sort_key", "first"),
        start=("start", "min"),
        end=("end", "max"),
        n_rows=("n_rows", "sum"),
        n_labelled=("n_labelled", "sum"),
    )
    merged = merged.sort_values("sort_key", kind="stable").reset_index()
    table = pd.DataFrame(
        {
            "chunk": merged["chunk"].to_numpy(dtype=object),
            "chunk_index": np.arange(len(merged), dtype=np.int64),
            "start": pd.to_datetime(merged["start"]).astype("datetime64[ns]"),
            "end": pd.to_datetime(merged["end"]).astype("datetime64[ns]"),
            "n_rows": merged["n_rows"].to_numpy(dtype=np.int64),
        }
    )
    table["complete"] = table["n_rows"] >= min_rows
    table = table[list(CHUNK_TABLE_COLUMNS)]
    table["n_labelled"] = merged["n_labelled"].to_numpy(dtype=np.int64)
    return table


def _in_order(counts: ChunkCounts, order: Sequence[str]) -> ChunkCounts:
    """Chunk counts re-ordered to the chunk table's order (counts sort labels as text)."""
    indexer = counts.chunks.get_indexer(list(order))
    return ChunkCounts(
        pd.Index(list(order)),
        {name: c[indexer] for name, c in counts.counts.items()},
        counts.n_rows[indexer],
    )


def _psi_table(
    fitted: FittedReference, counts: list[ChunkCounts], order: list[str]
) -> pd.DataFrame:
    table = psi_table(fitted, [_in_order(c, order) for c in counts], order)
    table["chunk"] = table["chunk"].to_numpy(dtype=object)
    return table


# --- NannyML, one chunk per partition ------------------------------------------------------------


def _partition_nannyml(
    part: pd.DataFrame,
    _number: int,
    fitted: FittedNannyML,
    timestamp: str,
    order: list[str],
) -> NannyMLResults | None:
    if part.empty:
        return None
    # The pandas path's row order inside each chunk, so sums run in the same order.
    part = part.assign(**{_TIME: normalise_timestamps(part[timestamp], timestamp)})
    part = part.sort_values([_TIME, *order], kind="stable").reset_index(drop=True)
    codes, labels = pd.factorize(part[CHUNK], sort=False)
    assignment = ChunkAssignment(
        codes.astype(np.int64), pd.DataFrame({"chunk": np.asarray(labels, dtype=object)})
    )
    analysis = part.drop(columns=[CHUNK, _TIME])
    return run_nannyml(fitted, analysis, assignment, timestamp_column=timestamp)


def _ordered(
    frames: list[pd.DataFrame], columns: tuple[str, ...], block: Any, chunk_rank: dict
) -> pd.DataFrame:
    """Concatenate per-partition NannyML tables in the pandas path's order: block, then chunk."""
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    table = pd.concat(frames, ignore_index=True)
    keys = pd.DataFrame(
        {
            "block": [block(row) for row in table.itertuples(index=False)],
            "chunk": table["chunk"].map(chunk_rank),
        }
    )
    order = keys.sort_values(["block", "chunk"], kind="stable").index
    return table.loc[order].reset_index(drop=True)


def _nannyml_results(
    parts: list[NannyMLResults | None], fitted: FittedNannyML, chunk_order: list[str]
) -> NannyMLResults:
    parts = [p for p in parts if p is not None]
    rank = {chunk: i for i, chunk in enumerate(chunk_order)}
    univariate_blocks: list[tuple[str, str]] = []
    calc = fitted.univariate
    if calc is not None:
        for names, methods in (
            (calc.continuous_column_names, calc.continuous_method_names),
            (calc.categorical_column_names, calc.categorical_method_names),
        ):
            univariate_blocks += [(name, method) for name in names for method in methods]
    univariate_rank = {key: i for i, key in enumerate(univariate_blocks)}
    # the pandas path's order: the fitted models, then the canary (nannyml_drift.JUDGED)
    models = [m for m in JUDGED if m in fitted.estimators or m == "canary"]
    metrics = list(fitted.params.performance_metrics)

    def performance_block(row: Any) -> tuple[int, int]:
        return models.index(row.model), metrics.index(row.metric)

    return NannyMLResults(
        _ordered(
            [p.univariate for p in parts],
            UNIVARIATE_COLUMNS,
            lambda row: univariate_rank[(row.feature, row.method)],
            rank,
        ),
        _ordered([p.multivariate for p in parts], MULTIVARIATE_COLUMNS, lambda _: 0, rank),
        _ordered(
            [p.estimated_performance for p in parts], PERFORMANCE_COLUMNS, performance_block, rank
        ),
        _ordered(
            [p.realised_performance for p in parts], PERFORMANCE_COLUMNS, performance_block, rank
        ),
        sum(p.seconds for p in parts),
    )


def _with_chunk_labels(part: pd.DataFrame, chunking: _Chunking) -> pd.DataFrame:
    if part.empty:
        return part.assign(**{CHUNK: pd.Series([], dtype=object)})
    rows, _, _ = _chunk_rows(part, chunking)
    return part.assign(**{CHUNK: np.asarray(rows, dtype=object)})


# --- the whole computation -----------------------------------------------------------------------


def _sorted_by_time(analysis: dd.DataFrame, timestamp: str, order: list[str]) -> dd.DataFrame:
    """The table in the pandas path's row order (time, then ``order``), with global positions."""
    meta = analysis._meta.assign(**{_TIME: pd.Series([], dtype="datetime64[ns]")})
    timed = analysis.map_partitions(
        lambda part: part.assign(**{_TIME: normalise_timestamps(part[timestamp], timestamp)}),
        meta=meta,
    )
    ordered = timed.sort_values([_TIME, *order]).drop(columns=[_TIME]).persist()
    return with_row_positions(ordered, partition_offsets(partition_lengths(ordered)))


def compute_drift_partitioned(
    analysis: dd.DataFrame,
    fitted: FittedReference,
    *,
    timestamp_column: str = EVENT_TIME,
    tie_breakers: Sequence[str] | None = None,
) -> DriftResults:
    """``drift_monitor.compute_drift`` for a Dask DataFrame; the same ``DriftResults``.

    ``tie_breakers`` order rows that share an event time (size chunks depend on it); by
    default the entity id, then the prediction log's ``logged_at, request_id, record_index``.
    """
    started = time.perf_counter()
    params, schema = fitted.params, fitted.schema
    seconds: dict[str, float] = {"fit_reference": fitted.fit_seconds}
    ts = timestamp_column
    missing = [c for c in [ts, *schema.features, CHAMPION_PROBABILITY] if c not in analysis.columns]
    order = list(tie_breakers if tie_breakers is not None else (schema.id, *LOG_ORDER))
    order = [c for c in order if c in analysis.columns]
    lengths = partition_lengths(analysis)
    if lengths.sum() == 0:
        # Nothing to distribute: the pandas path's own answer for an empty window.
        return compute_drift(analysis._meta, fitted, timestamp_column=ts)
    if missing:
        raise DriftInputError(f"analysis lacks column(s) {', '.join(map(repr, missing))}")

    tick = time.perf_counter()
    chunking = _Chunking(
        timestamp=ts,
        target=schema.target,
        by=params.chunking.by,
        size=params.chunking.size,
        n_rows=int(lengths.sum()),
        agreement=all(c in analysis.columns for c in AGREEMENT_COLUMNS),
        params=params.chunking,
    )
    frame = _sorted_by_time(analysis, ts, order) if chunking.by == "size" else analysis
    count_tasks = partition_tasks(_partition_counts, frame, fitted, chunking)
    labelled = frame.map_partitions(
        _with_chunk_labels,
        chunking,
        meta=frame._meta.assign(**{CHUNK: pd.Series([], dtype=object)}),
    )
    if ROW_POSITION in labelled.columns:
        labelled = labelled.drop(columns=[ROW_POSITION])
    shuffled = labelled.shuffle(on=CHUNK)
    nannyml_tasks = partition_tasks(_partition_nannyml, shuffled, fitted.nannyml, ts, order)
    results = compute_together(*count_tasks, *nannyml_tasks)
    counted = [c for c in results[: len(count_tasks)] if c is not None]
    nannyml_parts = list(results[len(count_tasks) :])
    seconds["partitioned_counts_and_nannyml"] = time.perf_counter() - tick

    chunks = _chunk_table(counted, params.chunking.min_rows)
    chunk_order = chunks["chunk"].tolist()
    log_incomplete(
        ChunkAssignment(np.zeros(0, dtype=np.int64), chunks), params.chunking, "analysis"
    )
    psi_counts = [
        sum((c.psi[i] for c in counted[1:]), counted[0].psi[i]) for i in range(len(fitted.psi))
    ]
    psi = _psi_table(fitted, psi_counts, chunk_order)
    quality = quality_table(merge_quality(c.quality for c in counted), schema, chunk_order)
    if chunking.agreement:
        agreement = agreement_table(merge_agreement(c.agreement for c in counted), chunk_order)
    else:
        logger.warning(
            "analysis lacks %s: no champion/challenger agreement",
            ", ".join(c for c in AGREEMENT_COLUMNS if c not in analysis.columns),
        )
        agreement = pd.DataFrame({"chunk": pd.Series(dtype=object)})
    nml = _nannyml_results(nannyml_parts, fitted.nannyml, chunk_order)

    decision = decide_from_tables(fitted, chunks, psi, quality, nml)
    seconds["analysis_total"] = time.perf_counter() - started
    n_rows = int(chunks["n_rows"].sum())
    info = {
        "n_rows": n_rows,
        "start": str(min(c.first_time for c in counted)),
        "end": str(max(c.last_time for c in counted)),
        "n_labelled": int(chunks["n_labelled"].sum()),
        "chunks": len(chunks),
        "complete_chunks": int(chunks["complete"].sum()),
    }
    logger.info(
        "analysis: %d rows in %d partitions, %d with ground truth, %d chunks (%d complete)",
        n_rows,
        len(lengths),
        info["n_labelled"],
        info["chunks"],
        info["complete_chunks"],
    )
    return DriftResults(
        schema, params, fitted.threshold, chunks, psi, quality, agreement, nml, decision,
        fitted.info, info, seconds,
    )  # fmt: skip
