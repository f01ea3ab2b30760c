"""Replay production records to a running service, then post their ground truth after a delay.

``kedro replay`` (``shadowdrift.cli``) loads ``raw_production`` from the Kedro catalog and calls
``replay``: records go in event-time order to ``POST /predict`` at a bounded rate, in requests of
``batch_size`` records, until ``max_records`` or ``max_seconds`` is reached. Where a record has a
target, its label is posted to ``POST /feedback`` (by request id and record index) once
``feedback_delay_s`` has passed since its answer, as ground truth would arrive in production.
Loopback only unless ``allow_remote``. Plain httpx; no Kedro import.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

logger = logging.getLogger(__name__)

FEEDBACK_BATCH = 1000  # labels per POST /feedback (the service's default max_items is 10,000)


class ReplayError(RuntimeError):
    """The replay cannot start or the service refused it (the message says why)."""


@dataclass(frozen=True)
class ReplayPlan:
    """How much to send, how fast, and when the ground truth follows."""

    url: str = "http://127.0.0.1:3000"
    rate: float = 200.0  # records per second
    batch_size: int = 1  # records per request
    max_records: int | None = None
    max_seconds: float | None = 60.0
    feedback_delay_s: float | None = 0.0  # None: post no ground truth
    allow_remote: bool = False
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ReplayError(
                f"rate must be a positive number of records per second, got {self.rate}"
            )
        if self.batch_size < 1:
            raise ReplayError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.max_records is not None and self.max_records < 1:
            raise ReplayError(f"max_records must be at least 1, got {self.max_records}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ReplayError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.feedback_delay_s is not None and self.feedback_delay_s < 0:
            raise ReplayError(f"feedback_delay_s must be >= 0, got {self.feedback_delay_s}")
        if self.max_records is None and self.max_seconds is None:
            raise ReplayError("set max_records or max_seconds: a replay must be bounded")
        check_loopback(self.url, self.allow_remote)


@dataclass
class ReplayReport:
    """What happened: counts, timing, and the first errors the service answered with."""

    records_sent: int = 0
    records_answered: int = 0
    requests: int = 0
    status_counts: Counter = field(default_factory=Counter)
    labels_posted: int = 0
    labels_rejected: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    champion_versions: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    request_ids: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms) if self.latencies_ms else None
        return {
            "records_sent": self.records_sent,
            "records_answered": self.records_answered,
            "requests": self.requests,
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "labels_posted": self.labels_posted,
            "labels_rejected": self.labels_rejected,
            "seconds": round(self.seconds, 3),
            "records_per_second": round(self.records_sent / self.seconds, 1)
            if self.seconds
            else None,
            "latency_ms_p50": float(np.percentile(lat, 50)) if lat is not None else None,
            "latency_ms_p99": float(np.percentile(lat, 99)) if lat is not None else None,
            "champion_versions": dict(self.champion_versions),
            "errors": self.errors[:10],
        }


def check_loopback(url: str, allow_remote: bool) -> None:
    """Refuse a non-loopback target unless ``allow_remote`` (a replay is load you generate)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ReplayError(f"url must look like http://127.0.0.1:3000, got {url!r}")
    if allow_remote:
        return
    host = parts.hostname
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        raise ReplayError(
            f"{host} is not a loopback address: replay sends load; pass --allow-remote to send it "
            "to another machine"
        )


def to_json_records(frame: pd.DataFrame, fields_: Sequence[str]) -> list[dict[str, Any]]:
    """Records as JSON-ready dicts: NaN and NaT become null, timestamps ISO 8601 UTC."""
    out = frame[list(fields_)].copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            times = pd.to_datetime(out[column], utc=True)
            out[column] = times.dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").where(times.notna(), None)
    # orient=records turns NaN into null and numpy scalars into JSON numbers
    return json.loads(out.to_json(orient="records", date_format="iso"))


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def replay(
    records: pd.DataFrame,
    plan: ReplayPlan,
    *,
    fields: Sequence[str],
    timestamp: str | None = None,
    target: str | None = None,
    client: httpx.Client | None = None,
    progress: bool = True,
) -> ReplayReport:
    """Send ``records`` (columns ``fields``) to ``plan.url`` and their ``target`` as feedback."""
    missing = [f for f in fields if f not in records.columns]
    if missing:
        raise ReplayError(f"the records lack field(s) the service needs: {', '.join(missing)}")
    if timestamp is not None and timestamp in records.columns:
        records = records.sort_values(timestamp, kind="stable")
    if plan.max_records is not None:
        records = records.iloc[: plan.max_records]
    records = records.reset_index(drop=True)
    labels = (
        records[target].to_numpy()
        if target is not None and target in records.columns and plan.feedback_delay_s is not None
        else None
    )
    if plan.feedback_delay_s is not None and labels is None:
        logger.info("The records carry no %r column: no ground truth will be posted", target)
    payload = to_json_records(records, fields)
    own_client = client is None
    http = client or httpx.Client(base_url=plan.url, timeout=plan.timeout_s)
    report = ReplayReport()
    pending: deque[tuple[float, list[dict[str, Any]]]] = deque()
    run_id = uuid.uuid4().hex[:8]
    try:
        _check_ready(http, plan.url)
        start = time.monotonic()
        deadline = start + plan.max_seconds if plan.max_seconds is not None else math.inf
        with _progress(progress, len(payload)) as (bar, task):
            for i, part in enumerate(_batches(len(payload), plan.batch_size)):
                due = start + part.start / plan.rate
                now = time.monotonic()
                if due >= deadline or now >= deadline:
                    logger.info("max_seconds reached after %d records", report.records_sent)
                    break
                if due > now:
                    time.sleep(due - now)
                request_id = f"replay-{run_id}-{i:07d}"
                _send(http, payload[part], request_id, report)
                if labels is not None and request_id in report.request_ids[-1:]:
                    pending.append(
                        (
                            time.monotonic() + plan.feedback_delay_s,
                            [
                                {"request_id": request_id, "record_index": j, "label": int(y)}
                                for j, y in enumerate(labels[part])
                                if not pd.isna(y)
                            ],
                        )
                    )
                _post_due(http, pending, report, time.monotonic())
                bar.update(task, completed=report.records_sent)
        while pending:
            wait = pending[0][0] - time.monotonic()
            if wait > 0:
                time.sleep(min(wait, 0.2))
            _post_due(http, pending, report, time.monotonic())
        report.seconds = time.monotonic() - start
    finally:
        if own_client:
            http.close()
    logger.info("Replay: %s", json.dumps(report.to_dict()))
    return report


def _check_ready(http: httpx.Client, url: str) -> None:
    try:
        response = http.get("/readyz")
    except httpx.HTTPError as exc:
        raise ReplayError(
            f"no service answers at {url} ({exc.__class__.__name__}): start it with `make serve`"
        ) from exc
    if response.status_code != 200:
        raise ReplayError(
            f"the service at {url} is not ready (GET /readyz: {response.status_code})"
        )


def _send(
    http: httpx.Client, records: list[dict[str, Any]], request_id: str, report: ReplayReport
) -> None:
    t0 = time.perf_counter()
    try:
        response = http.post(
            "/predict", json={"records": records}, headers={"X-Request-ID": request_id}
        )
    except httpx.HTTPError as exc:
        report.status_counts["connection_error"] += 1
        report.errors.append(f"{request_id}: {exc.__class__.__name__}: {exc}")
        report.records_sent += len(records)
        report.requests += 1
        return
    report.latencies_ms.append((time.perf_counter() - t0) * 1000)
    report.requests += 1
    report.records_sent += len(records)
    report.status_counts[response.status_code] += 1
    if response.status_code != 200:
        report.errors.append(f"{request_id}: {response.status_code} {response.text[:300]}")
        return
    report.records_answered += len(records)
    report.request_ids.append(request_id)
    for prediction in response.json().get("predictions", []):
        report.champion_versions[str(prediction.get("model_version"))] += 1


def _post_due(
    http: httpx.Client,
    pending: deque[tuple[float, list[dict[str, Any]]]],
    report: ReplayReport,
    now: float,
) -> None:
    due: list[dict[str, Any]] = []
    while pending and pending[0][0] <= now and len(due) < FEEDBACK_BATCH:
        due.extend(pending.popleft()[1])
    if not due:
        return
    try:
        response = http.post("/feedback", json={"labels": due})
    except httpx.HTTPError as exc:
        report.labels_rejected += len(due)
        report.errors.append(f"feedback: {exc.__class__.__name__}: {exc}")
        return
    if response.status_code == 200:
        report.labels_posted += int(response.json().get("accepted", len(due)))
    else:
        report.labels_rejected += len(due)
        report.errors.append(f"feedback: {response.status_code} {response.text[:300]}")


class _NoProgress:
    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


class _progress:
    """A rich progress bar over records sent, or nothing (tests, non-interactive runs)."""

    def __init__(self, enabled: bool, total: int):
        self.enabled, self.total = enabled, total
        self.bar: Progress | None = None

    def __enter__(self) -> tuple[Any, Any]:
        if not self.enabled:
            return _NoProgress(), None
        self.bar = Progress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("records"),
            TimeElapsedColumn(),
        )
        self.bar.__enter__()
        return self.bar, self.bar.add_task("replay", total=self.total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)
