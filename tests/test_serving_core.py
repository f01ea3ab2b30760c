"""The service's request handling in-process: answers, shadow isolation, the logs, metrics, reload."""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from shadowdrift.prediction_log import (
    COLUMNS_MIN_RECORDS,
    BackgroundFlusher,
    PredictionLogWriter,
    read_prediction_log,
)
from shadowdrift.serving.bundle import ModelBundle, bundle_from_models
from shadowdrift.serving.config import (
    DurabilitySettings,
    ServingSettings,
    parse_serving_settings,
)
from shadowdrift.serving.core import ServingCore
from shadowdrift.serving.feedback import GroundTruthWriter, Label, read_ground_truth
from shadowdrift.serving.metrics import ServingMetrics, observe_many
from shadowdrift.serving.shadow import ShadowJob, ShadowResult, ShadowRunner
from tests.conftest import base_parameters
from tests.test_serving_fast_path import awkward_records, project_schema, tiny_models
from tests.test_serving_validation import GOOD, record

# tiny models are trained once per session (a few seconds), and one test waits on a slow challenger
pytestmark = pytest.mark.slow


def settings_for(tmp_path: Path, **shadow: Any) -> ServingSettings:
    """The project's settings; the shadow in this process (``mode: thread``) unless told."""
    settings = parse_serving_settings(base_parameters(), tmp_path)
    shadow = {"batch_wait_s": 0.01, "mode": "thread", **shadow}
    return dataclasses.replace(settings, shadow=dataclasses.replace(settings.shadow, **shadow))


def metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


class Harness:
    """A ServingCore on tiny models, with writers that flush only when closed."""

    def __init__(
        self, tmp_path: Path, challenger: Any = "mlp", durability: str = "buffered", **shadow: Any
    ) -> None:
        self.settings = settings_for(tmp_path, **shadow)
        self.settings = dataclasses.replace(
            self.settings, log_durability=DurabilitySettings(mode=durability)
        )
        self.registry = CollectorRegistry()
        self.core = ServingCore(
            self.settings,
            metrics=ServingMetrics(self.registry),
            log_writer=PredictionLogWriter(
                self.settings.prediction_log.path,
                _log_schema(),
                flush_interval_s=None,
            ),
            ground_truth_writer=GroundTruthWriter(
                self.settings.ground_truth.path, flush_interval_s=None
            ),
        )
        models = tiny_models()
        other = models["mlp"] if challenger == "mlp" else challenger
        self.core.install(bundle_from_models(models["gbm"], other, project_schema(), self.settings))
        self.closed = False

    def close(self) -> pd.DataFrame:
        if not self.closed:
            self.core.close(grace_s=5.0)
            self.closed = True
        return read_prediction_log(self.settings.prediction_log.path)


def _log_schema():
    from shadowdrift.prediction_log import LogSchema

    return LogSchema.from_data_schema(project_schema())


@pytest.fixture
def harness(tmp_path):
    made: list[Harness] = []

    def make(**kwargs: Any) -> Harness:
        h = Harness(tmp_path / f"h{len(made)}", **kwargs)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def frame_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = []
    for row in frame.to_dict(orient="records"):
        out.append(
            {
                k: (
                    None
                    if isinstance(v, float) and math.isnan(v)
                    else (v.item() if hasattr(v, "item") else v)
                )
                for k, v in row.items()
            }
        )
    return out


# -- answers -------------------------------------------------------------------------------


def test_answers_match_the_champion_and_carry_version_and_request_id(harness):
    h = harness()
    frame = awkward_records(50)
    reply = h.core.predict(frame_records(frame), "client-req-7")
    assert reply.status == 200
    assert reply.headers["X-Request-ID"] == "client-req-7"
    body = reply.json()
    assert body["request_id"] == "client-req-7" and body["model_version"] == "1"
    champion = tiny_models()["gbm"]
    expected = champion.predict_probability(frame)
    got = np.array([p["probability"] for p in body["predictions"]])
    assert np.array_equal(got, expected)
    assert [p["label"] for p in body["predictions"]] == (expected >= champion.threshold).astype(
        int
    ).tolist()
    assert {(p["request_id"], p["model_version"]) for p in body["predictions"]} == {
        ("client-req-7", "1")
    }
    assert [p["record_index"] for p in body["predictions"]] == list(range(50))


def test_a_single_record_object_is_one_record(harness):
    h = harness()
    reply = h.core.predict(record())
    assert reply.status == 200
    body = reply.json()
    assert len(body["predictions"]) == 1 and len(body["request_id"]) == 32


@pytest.mark.parametrize(
    ("payload", "header", "status", "needle"),
    [
        ([record(age="x")], None, 422, "age"),
        ([record(churned=1)], None, 422, "churned"),
        ("records", None, 422, "expected an object or an array"),
        ([], None, 422, "must not be empty"),
        ([record()], "bad id!", 400, "X-Request-ID"),
    ],
)
def test_client_mistakes_are_4xx_and_counted(harness, payload, header, status, needle):
    h = harness()
    reply = h.core.predict(payload, header)
    assert reply.status == status
    assert needle in reply.body_bytes().decode()
    assert (
        sum(
            metric(h.registry, "shadowdrift_rejected_requests_total", reason=r)
            for r in ("validation", "bad_request")
        )
        == 1
    )
    assert h.close().empty


def test_too_many_records_is_413(harness, tmp_path):
    h = harness()
    h.core.validator.policy = dataclasses.replace(h.core.validator.policy, max_records=2)
    assert h.core.predict([record()] * 3).status == 413


def test_not_ready_is_503(tmp_path):
    settings = settings_for(tmp_path)
    core = ServingCore(settings, log_writer=None, start_shadow=False)
    try:
        reply = core.predict([record()])
        assert reply.status == 503 and "not loaded" in reply.json()["error"]
        core.failed_to_load(RuntimeError("no model in the store"))
        assert "no model in the store" in core.predict([record()]).json()["error"]
        assert core.model_info()["ready"] is False
    finally:
        core.close(grace_s=0.1)


# -- the prediction log --------------------------------------------------------------------


def test_every_record_is_logged_with_inputs_and_both_models(harness):
    h = harness()
    frame = awkward_records(30)
    records = frame_records(frame)
    for i, one in enumerate(records):
        one["customer_id"] = 1000 + i
        one["event_time"] = "2026-02-03T04:05:06Z"
    first = h.core.predict(records[:20], "req-a").json()
    second = h.core.predict(records[20:]).json()
    log = h.close()
    assert len(log) == 30
    assert set(log["request_id"]) == {"req-a", second["request_id"]}
    log = log.sort_values(["request_id", "record_index"]).reset_index(drop=True)
    part = log[log["request_id"] == "req-a"].reset_index(drop=True)
    assert part["record_index"].tolist() == list(range(20))
    assert np.array_equal(
        part["champion_probability"], [p["probability"] for p in first["predictions"]]
    )
    assert (part["champion_model_version"] == "1").all() and (part["champion_latency_ms"] > 0).all()
    assert (log["challenger_status"] == "ok").all()
    challenger = tiny_models()["mlp"]
    expected = challenger.predict_probability(frame.iloc[:20])
    np.testing.assert_allclose(part["challenger_probability"], expected, rtol=1e-6)
    assert (log["challenger_model_version"] == "2").all()
    assert part["customer_id"].tolist() == [str(1000 + i) for i in range(20)]
    assert (part["event_time"] == pd.Timestamp("2026-02-03T04:05:06Z")).all()
    # inputs as sent: missing stays missing, unseen categories are kept for drift monitoring
    pd.testing.assert_series_equal(
        part["payment_method"],
        frame["payment_method"].iloc[:20].reset_index(drop=True),
        check_names=False,
    )
    assert part["tenure_months"].isna().tolist() == frame["tenure_months"].iloc[:20].isna().tolist()


def test_batches_are_logged_column_by_column_like_single_records(harness):
    """A batch goes to the log as columns, a single record as a dict: the rows are the same."""
    h = harness()
    frame = awkward_records(40)
    records = frame_records(frame)
    for i, one in enumerate(records):
        one["customer_id"] = None if i % 4 == 0 else (1000 + i if i % 2 else f"c{i}")
        one["event_time"] = None if i % 3 == 0 else "2026-02-03T06:05:06+02:00"
    assert len(records) >= COLUMNS_MIN_RECORDS
    batch = h.core.predict(copy.deepcopy(records), "batch").json()
    for i, one in enumerate(records):
        assert h.core.predict([dict(one)], f"one-{i:02d}").status == 200
    log = h.close()
    as_batch = log[log["request_id"] == "batch"].sort_values("record_index", ignore_index=True)
    singly = log[log["request_id"] != "batch"].sort_values("request_id", ignore_index=True)
    assert len(as_batch) == len(singly) == 40
    same = [
        *project_schema().features,
        "customer_id",
        "champion_probability",
        "champion_label",
        "champion_model_version",
        "challenger_status",
        "challenger_label",
        "challenger_model_version",
        "source",
    ]
    pd.testing.assert_frame_equal(as_batch[same], singly[same])
    assert as_batch["champion_probability"].tolist() == [
        p["probability"] for p in batch["predictions"]
    ]
    # torch differs in the last bits between batch sizes
    np.testing.assert_allclose(
        as_batch["challenger_probability"], singly["challenger_probability"], rtol=1e-6
    )
    assert as_batch["customer_id"].tolist()[:4] == [None, "1001", "c2", "1003"]
    timed = [i % 3 != 0 for i in range(40)]
    for part in (as_batch, singly):
        assert (part.loc[timed, "event_time"] == pd.Timestamp("2026-02-03T04:05:06Z")).all()
        untimed = part.loc[[not t for t in timed]]
        assert (untimed["event_time"] == untimed["logged_at"]).all()
        assert (part["champion_latency_ms"] > 0).all() and (part["challenger_latency_ms"] > 0).all()


def test_each_models_scoring_series_exist_at_zero_once_it_is_loaded(harness):
    """A scrape before the first request sees 0, so a rate over the first burst is not lost."""
    h = harness()
    for role, version in (("champion", "1"), ("challenger", "2")):
        labels = {"role": role, "model_version": version}
        assert h.registry.get_sample_value("shadowdrift_model_records_total", labels) == 0
        assert h.registry.get_sample_value("shadowdrift_model_requests_total", labels) == 0
        count = h.registry.get_sample_value(
            "shadowdrift_model_latency_seconds_count", {"role": role}
        )
        assert count == 0, role


def test_unseen_categories_and_missing_values_are_counted(harness):
    h = harness()
    # every feature's counter exists at 0 before the first request: a rate over it reads 0
    for feature in h.core.schema.categorical_features:
        value = h.registry.get_sample_value(
            "shadowdrift_unseen_category_total", {"feature": feature}
        )
        assert value == 0, feature
    for feature in h.core.schema.features:
        value = h.registry.get_sample_value("shadowdrift_missing_value_total", {"feature": feature})
        assert value == 0, feature
    h.core.predict([record(payment_method="digital_wallet", satisfaction_score=None)])
    assert metric(h.registry, "shadowdrift_unseen_category_total", feature="payment_method") == 1
    assert metric(h.registry, "shadowdrift_missing_value_total", feature="satisfaction_score") == 1
    log = h.close()
    assert log["payment_method"].tolist() == ["digital_wallet"]


# -- shadow isolation ----------------------------------------------------------------------


class Broken:
    """A challenger that always raises."""

    name, kind, threshold = "broken", "test", 0.5
    numeric_features = list(GOOD)[:11]
    categorical_features = list(GOOD)[11:]

    def predict_probability(self, frame: Any) -> np.ndarray:
        raise RuntimeError("challenger exploded")


class Slow(Broken):
    """A challenger that takes a second per call."""

    name = "slow"

    def __init__(self) -> None:
        self.calls = 0

    def predict_probability(self, frame: Any) -> np.ndarray:
        self.calls += 1
        time.sleep(1.0)
        return np.full(len(frame), 0.5)


def test_a_failing_challenger_never_reaches_the_client(harness):
    h = harness(challenger=Broken())
    champion_only = harness(challenger=None)
    for _ in range(5):
        payload = [record(), record(age=70)]
        reply = h.core.predict([dict(r) for r in payload], "same")
        baseline = champion_only.core.predict([dict(r) for r in payload], "same")
        assert reply.status == 200
        assert reply.json() == baseline.json()
    log = h.close()
    assert len(log) == 10
    assert (log["challenger_status"] == "failed").all()
    assert log["challenger_probability"].isna().all()
    assert metric(h.registry, "shadowdrift_shadow_records_total", status="failed") == 10
    assert (champion_only.close()["challenger_status"] == "disabled").all()


def test_a_slow_challenger_never_delays_answers_and_sheds_beyond_the_bound(harness):
    slow = Slow()
    h = harness(challenger=slow, queue_records=4, max_batch_records=2)
    durations = []
    for _ in range(30):
        started = time.perf_counter()
        reply = h.core.predict([record()])
        durations.append(time.perf_counter() - started)
        assert reply.status == 200
    assert max(durations) < 0.25, "an answer waited for the challenger"
    assert h.core.shadow_runner.queued_records <= 4
    log = h.close()
    assert len(log) == 30, "every request is logged, shed or not"
    statuses = log["challenger_status"].value_counts().to_dict()
    assert statuses.get("shed", 0) >= 20
    assert statuses.get("shed", 0) + statuses.get("ok", 0) == 30
    assert metric(h.registry, "shadowdrift_shadow_records_total", status="shed") == statuses["shed"]


def test_sampling_sends_only_a_share_to_the_challenger(harness):
    h = harness(sample_rate=0.0)
    for _ in range(5):
        assert h.core.predict([record()]).status == 200
    log = h.close()
    assert (log["challenger_status"] == "sampled_out").all()


def test_shadow_runner_finishes_every_job_once_even_at_shutdown():
    finished: list[str] = []
    gate = threading.Event()

    class Waiting:
        def predict_probability(self, numeric, categorical):
            gate.wait(5)
            return np.zeros(numeric.shape[0])

        def labels(self, p):
            return (p >= 0.5).astype(np.int64)

    def finish(batch: list[tuple[ShadowJob, ShadowResult]]) -> None:
        finished.extend(f"{job.request_id}:{result.status}" for job, result in batch)

    runner = ShadowRunner(finish, queue_records=3, max_batch_records=1, batch_wait_s=0.0)
    scorer = Waiting()
    for i in range(6):
        runner.offer(ShadowJob(str(i), scorer, "2", np.zeros((1, 2)), [["a"]]))
    runner.stop(grace_s=0.2)
    gate.set()
    time.sleep(0.1)
    ids = sorted(item.split(":")[0] for item in finished)
    assert ids == [str(i) for i in range(6)], finished
    assert any(item.endswith(":shed") for item in finished)


# -- feedback, model info, reload, metrics -------------------------------------------------


def test_feedback_is_stored_and_joinable_by_request_id(harness):
    h = harness()
    rid = h.core.predict([record(), record()]).json()["request_id"]
    assert h.core.feedback({"request_id": rid, "record_index": 1, "label": 1}).status == 200
    reply = h.core.feedback(
        {
            "labels": [
                {"request_id": rid, "label": False},
                {"request_id": rid, "record_index": 1, "label": 0},
            ]
        }
    )
    assert reply.json() == {"accepted": 2}
    bad = h.core.feedback({"request_id": rid, "label": 2, "colour": "x"})
    assert bad.status == 422
    assert {d["field"] for d in bad.json()["detail"]} == {"label", "colour"}
    assert h.core.feedback({"labels": []}).status == 422
    log = h.close()
    labels = read_ground_truth(h.settings.ground_truth.path)
    assert labels["request_id"].tolist() == [rid] * 3
    assert labels["label"].tolist() == [1, 0, 0]
    assert labels["record_index"].isna().tolist() == [False, True, False]
    latest = read_ground_truth(h.settings.ground_truth.path, latest_only=True)
    joined = log.merge(latest.dropna(subset=["record_index"]), on=["request_id", "record_index"])
    assert joined["label"].tolist() == [0]
    assert metric(h.registry, "shadowdrift_feedback_records_total") == 3


def _same_traffic(h: Harness) -> tuple[list[Any], pd.DataFrame, pd.DataFrame]:
    """Single records, a batch logged as columns and labels, with fixed request ids."""
    records = frame_records(awkward_records(40))
    # copies: the core logs a request's own dicts (the service parses a fresh body each time)
    replies = [h.core.predict(dict(records[i]), f"one-{i}") for i in range(5)]
    replies.append(h.core.predict([dict(r) for r in records], "batch"))
    replies.append(h.core.feedback({"request_id": "batch", "record_index": 3, "label": 1}))
    log = h.close()
    labels = read_ground_truth(h.settings.ground_truth.path)
    return replies, log, labels


def _comparable(frame: pd.DataFrame, drop: tuple[str, ...]) -> pd.DataFrame:
    return (
        frame.drop(columns=list(drop))
        .sort_values(["request_id", "record_index"])
        .reset_index(drop=True)
    )


def test_acknowledged_answers_wait_for_the_disk_and_log_what_buffered_logs(harness):
    buffered = harness()
    acknowledged = harness(durability="acknowledged")
    assert buffered.core.model_info()["durability"] == {"mode": "buffered"}

    replies_b, log_b, labels_b = _same_traffic(buffered)
    replies_a, log_a, labels_a = _same_traffic(acknowledged)

    assert [reply.status for reply in replies_b] == [200] * 7
    assert all(reply.durable is None for reply in replies_b)
    assert [reply.status for reply in replies_a] == [200] * 7
    for reply in replies_a:  # the service sends each answer once its future has resolved
        assert reply.durable is not None and reply.durable.result(timeout=10) is None
    # the same rows, columns and types: readers cannot tell the modes apart
    timing = ("logged_at", "event_time", "champion_latency_ms", "challenger_latency_ms")
    # no event_time sent: it is logged_at, in the acknowledged mode the write-ahead entry's time
    assert (log_a["event_time"] == log_a["logged_at"]).all()
    pd.testing.assert_frame_equal(_comparable(log_a, timing), _comparable(log_b, timing))
    pd.testing.assert_frame_equal(
        _comparable(labels_a, ("received_at",)), _comparable(labels_b, ("received_at",))
    )
    # a clean shutdown compacts the write-ahead logs away
    for path in (
        acknowledged.settings.prediction_log.path,
        acknowledged.settings.ground_truth.path,
    ):
        assert not list((path / "_wal").rglob("*.wal"))


def test_acknowledged_answers_fail_when_the_disk_refuses_the_write_ahead_log(harness, monkeypatch):
    from shadowdrift import write_ahead_log

    h = harness(durability="acknowledged")

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(write_ahead_log.os, "fdatasync", full_disk)
    reply = h.core.predict(record(), "not-durable")
    with pytest.raises(write_ahead_log.WriteAheadError, match="No space left on device"):
        reply.durable.result(timeout=10)
    durability = h.core.model_info()["durability"]
    assert durability["mode"] == "acknowledged"
    # the shadow's outcome entry may fail a second commit, depending on timing
    assert durability["prediction_log"]["failed_commits"] >= 1


def test_the_ground_truth_log_flushes_on_the_shared_thread(tmp_path, monkeypatch):
    """The feedback writer uses the prediction log's flush thread: periodic, errors retried."""
    from shadowdrift.serving import feedback

    writer = GroundTruthWriter(tmp_path, flush_interval_s=0.05)
    assert isinstance(writer._flusher, BackgroundFlusher)
    real_write = feedback._write_part_atomically
    failures: list[int] = []

    def fail_once(*args: Any) -> Path:
        if not failures:
            failures.append(1)
            raise OSError(28, "No space left on device")
        return real_write(*args)

    monkeypatch.setattr(feedback, "_write_part_atomically", fail_once)
    try:
        writer.append([Label("r1", 1, 0), Label("r2", 0)])
        deadline = time.monotonic() + 5
        while writer.records_flushed < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.records_flushed == 2 and writer.flush_errors == 1
    finally:
        writer.close()
    labels = read_ground_truth(tmp_path)
    assert labels[["request_id", "label"]].values.tolist() == [["r1", 1], ["r2", 0]]
    with pytest.raises(RuntimeError, match="closed"):
        writer.append([Label("r3", 1)])


def test_model_info_and_an_atomic_reload(harness):
    h = harness()
    info = h.core.model_info()
    assert info["ready"] and info["champion"]["model_version"] == "1"
    assert info["champion"]["fast_path"] == "compiled-hgb"
    assert info["challenger"]["candidate"] == "mlp"
    old: ModelBundle = h.core.bundle
    models = tiny_models()
    new = bundle_from_models(
        models["mlp"], models["gbm"], project_schema(), h.settings, versions=("5", "6")
    )
    h.core.predict([record()], "before")
    h.core.install(new)
    h.core.predict([record()], "after")
    assert h.core.model_info()["champion"]["model_version"] == "5"
    assert (
        metric(
            h.registry,
            "shadowdrift_model_info",
            role="champion",
            model_version="5",
            run_id="",
            candidate="mlp",
            bento_tag="",
        )
        == 1
    )
    assert (
        metric(
            h.registry,
            "shadowdrift_model_info",
            role="champion",
            model_version="1",
            run_id="",
            candidate="gbm",
            bento_tag="",
        )
        == 0
    )
    log = h.close().set_index("request_id")
    assert log.loc["before", "champion_model_version"] == "1"
    assert log.loc["before", "challenger_model_version"] == "2"
    assert log.loc["after", "champion_model_version"] == "5"
    assert log.loc["after", "challenger_model_version"] == "6"
    assert old is not h.core.bundle


def test_metrics_count_models_agreement_and_probabilities(harness):
    h = harness()
    frame = awkward_records(40)
    h.core.predict(frame_records(frame))
    h.close()
    r = h.registry
    assert metric(r, "shadowdrift_model_records_total", role="champion", model_version="1") == 40
    assert metric(r, "shadowdrift_model_records_total", role="challenger", model_version="2") == 40
    assert metric(r, "shadowdrift_prediction_probability_count", role="champion") == 40
    agree = metric(r, "shadowdrift_agreement_total", agree="true")
    disagree = metric(r, "shadowdrift_agreement_total", agree="false")
    assert agree + disagree == 40 and agree > 0
    assert metric(r, "shadowdrift_shadow_records_total", status="ok") == 40
    assert metric(r, "shadowdrift_prediction_log_records", state="flushed") == 40


def test_bulk_observe_matches_observe_one_by_one():
    values = np.array([0.0, 0.05, 0.051, 0.5, 0.999, 1.0, np.nan, 0.3])
    one, many = CollectorRegistry(), CollectorRegistry()
    a = ServingMetrics(one).probability.labels("champion")
    b = ServingMetrics(many).probability.labels("champion")
    for v in values[~np.isnan(values)]:
        a.observe(float(v))
    observe_many(b, values)
    samples_one = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in one.collect()
        for s in m.samples
        if "probability" in s.name
    }
    samples_many = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for m in many.collect()
        for s in m.samples
        if "probability" in s.name
    }
    assert samples_one.keys() == samples_many.keys()
    for key, value in samples_one.items():
        if not key[0].endswith("_created"):
            assert samples_many[key] == pytest.approx(value), key


def test_model_info_without_the_token_leaves_out_paths_and_pids(harness):
    h = harness()
    h.core.load_error = "OSError: cannot read /srv/models/x.pkl (file:///srv/models)"
    private = h.core.model_info()
    public = h.core.model_info(private=False)
    assert private["worker_pid"] > 0 and "path" in private["prediction_log"]
    assert "worker_pid" not in public and "path" not in public["prediction_log"]
    assert public["load_error"] == "OSError: cannot read <path> (<path>)"
    assert public["champion"]["model_version"] == private["champion"]["model_version"]
    assert str(h.settings.prediction_log.path) not in str(public)
    assert public["shadow"]["circuit_breaker"]["state"] == "closed"
