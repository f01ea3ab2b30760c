"""Replay: bounded, paced traffic to the service, then the ground truth by request id."""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pandas as pd
import pytest

from shadowdrift.replay import ReplayError, ReplayPlan, check_loopback, replay


class FakeService:
    """Answers /readyz, /predict and /feedback like the service, and remembers what it got."""

    def __init__(self, ready: bool = True, reject_every: int | None = None):
        self.ready, self.reject_every = ready, reject_every
        self.predicts: list[tuple[float, str, list[dict]]] = []
        self.feedback: list[tuple[float, list[dict]]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/readyz":
            return httpx.Response(200 if self.ready else 503)
        body = json.loads(request.content)
        if request.url.path == "/predict":
            request_id = request.headers["X-Request-ID"]
            self.predicts.append((time.monotonic(), request_id, body["records"]))
            if self.reject_every and len(self.predicts) % self.reject_every == 0:
                return httpx.Response(422, json={"detail": [{"field": "age"}]})
            return httpx.Response(
                200,
                json={
                    "request_id": request_id,
                    "predictions": [
                        {"probability": 0.5, "model_version": "7"} for _ in body["records"]
                    ],
                },
            )
        self.feedback.append((time.monotonic(), body["labels"]))
        return httpx.Response(200, json={"accepted": len(body["labels"])})


def _records(n: int = 50) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "event_time": pd.date_range("2025-01-01", periods=n, freq="h")[::-1],
            "age": np.where(np.arange(n) == 3, np.nan, 30.0),
            "churned": np.arange(n) % 2,
        }
    )


def _run(service: FakeService, records: pd.DataFrame, **plan):
    client = httpx.Client(base_url="http://127.0.0.1:3000", transport=httpx.MockTransport(service))
    return replay(
        records,
        ReplayPlan(**plan),
        fields=["customer_id", "event_time", "age"],
        timestamp="event_time",
        target="churned",
        client=client,
        progress=False,
    )


def test_records_go_in_event_time_order_with_nulls_and_iso_times():
    service = FakeService()
    report = _run(service, _records(), batch_size=10, rate=10_000, max_seconds=10)
    assert report.records_answered == 50 and report.requests == 5
    sent = [record for _, _, records in service.predicts for record in records]
    times = [r["event_time"] for r in sent]
    assert times == sorted(times) and times[0].endswith("Z")
    assert sum(r["age"] is None for r in sent) == 1
    assert "churned" not in sent[0]  # the target is ground truth, never an input


def test_ground_truth_follows_each_answer_after_the_delay():
    service = FakeService()
    report = _run(service, _records(20), batch_size=5, rate=10_000, feedback_delay_s=0.3)
    assert report.labels_posted == 20
    answered = {request_id: at for at, request_id, _ in service.predicts}
    for at, labels in service.feedback:
        for label in labels:
            assert at - answered[label["request_id"]] >= 0.3
    by_key = {
        (label["request_id"], label["record_index"]): label["label"]
        for _, labels in service.feedback
        for label in labels
    }
    first_request = service.predicts[0][1]
    assert by_key[(first_request, 0)] == int(
        _records(20).sort_values("event_time")["churned"].iloc[0]
    )


def test_the_rate_and_the_bounds_hold():
    service = FakeService()
    start = time.monotonic()
    report = _run(service, _records(50), rate=100, max_records=20, feedback_delay_s=None)
    assert report.records_sent == 20 and report.labels_posted == 0
    assert time.monotonic() - start >= 19 / 100
    report = _run(FakeService(), _records(50), rate=20, max_seconds=0.5, feedback_delay_s=None)
    assert report.records_sent <= 11


def test_rejected_requests_are_counted_with_their_reason_and_get_no_labels():
    service = FakeService(reject_every=2)
    report = _run(service, _records(40), batch_size=10, rate=10_000)
    assert report.status_counts == {200: 2, 422: 2}
    assert report.labels_posted == 20
    assert "422" in report.errors[0] and "age" in report.errors[0]


def test_a_service_that_is_not_ready_stops_the_replay_before_sending():
    service = FakeService(ready=False)
    with pytest.raises(ReplayError, match="not ready"):
        _run(service, _records(), rate=10)
    assert service.predicts == []


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:3000", True),
        ("http://localhost:3000", True),
        ("http://[::1]:3000", True),
        ("http://10.0.0.5:3000", False),
        ("http://example.com", False),
    ],
)
def test_only_loopback_unless_allowed(url, ok):
    if ok:
        check_loopback(url, allow_remote=False)
    else:
        with pytest.raises(ReplayError, match="allow-remote"):
            check_loopback(url, allow_remote=False)
        check_loopback(url, allow_remote=True)


def test_an_unbounded_or_bad_plan_is_refused():
    with pytest.raises(ReplayError, match="bounded"):
        ReplayPlan(max_records=None, max_seconds=None)
    with pytest.raises(ReplayError, match="rate"):
        ReplayPlan(rate=0)
