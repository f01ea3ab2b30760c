"""Request validation against the schema from configuration: every bad input is a 4xx naming the field."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shadowdrift.schema import parse_schema
from shadowdrift.serving.config import (
    RequestPolicy,
    ServingConfigError,
    load_serving_settings,
    parse_serving_settings,
)
from shadowdrift.serving.request_validation import (
    COLUMNAR_MIN_RECORDS,
    RequestRejected,
    RequestValidator,
    parse_timestamp,
)
from tests.conftest import PROJECT_ROOT, base_parameters

GOOD = {
    "tenure_months": 6,
    "monthly_charges": 97.92,
    "total_charges": 625.5,
    "num_support_tickets": 1,
    "late_payments_12m": 0,
    "age": 24,
    "num_services": 4,
    "num_dependents": 1,
    "avg_monthly_gb": 50.4,
    "days_since_last_login": 16.2,
    "satisfaction_score": 3.5,
    "contract_type": "one_year",
    "payment_method": "bank_transfer",
    "internet_service": "fiber_optic",
    "region": "west",
    "paperless_billing": "yes",
    "tech_support": "no",
}


@pytest.fixture(scope="module")
def schema():
    return parse_schema(base_parameters()["schema"])


def validator(schema, **policy: Any) -> RequestValidator:
    return RequestValidator(schema, RequestPolicy(**policy))


def record(**changes: Any) -> dict[str, Any]:
    out = dict(GOOD)
    for key, value in changes.items():
        if value is _DROP:
            out.pop(key)
        else:
            out[key] = value
    return out


_DROP = object()

# (change to a good record, field that must be named, words the reason must contain)
BAD_INPUTS = [
    ({"age": _DROP}, "age", "is required"),
    ({"tenure_months": "12"}, "tenure_months", "must be a number, got string"),
    ({"tenure_months": True}, "tenure_months", "must be a number, got boolean"),
    ({"tenure_months": [1]}, "tenure_months", "must be a number, got array"),
    ({"tenure_months": 2.5}, "tenure_months", "must be an integer"),
    ({"tenure_months": 500}, "tenure_months", "must be <= 120"),
    ({"monthly_charges": -1.0}, "monthly_charges", "must be >= 0"),
    ({"satisfaction_score": 0.5}, "satisfaction_score", "must be >= 1"),
    ({"monthly_charges": math.inf}, "monthly_charges", "finite"),
    ({"monthly_charges": math.nan}, "monthly_charges", "finite"),
    ({"tenure_months": 10**400}, "tenure_months", "must be <= 120"),
    ({"region": 3}, "region", "must be a string, got number"),
    ({"region": {"a": 1}}, "region", "must be a string, got object"),
    ({"contract_type": _DROP}, "contract_type", "is required"),
    ({"churned": 1}, "churned", "target"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"customer_id": 1.5}, "customer_id", "string or an integer"),
    ({"customer_id": ""}, "customer_id", "1 to 256 characters"),
    ({"event_time": "yesterday"}, "event_time", "ISO 8601"),
    ({"event_time": 1700000000}, "event_time", "ISO 8601"),
    ({"event_time": "3000-01-01T00:00:00"}, "event_time", "between 1678 and 2261"),
]


@pytest.mark.parametrize("columnar", [False, True], ids=["per-record", "column-wise"])
@pytest.mark.parametrize(
    ("change", "field", "reason"), BAD_INPUTS, ids=[b[1] + ":" + b[2] for b in BAD_INPUTS]
)
def test_each_kind_of_bad_input_is_a_422_naming_the_field(schema, columnar, change, field, reason):
    records = [record() for _ in range(COLUMNAR_MIN_RECORDS)]
    records[3] = record(**change)
    with pytest.raises(RequestRejected) as caught:
        validator(schema).validate(records, columnar=columnar)
    rejection = caught.value
    assert rejection.status == 422
    assert [(p.record_index, p.field) for p in rejection.problems] == [(3, field)]
    assert reason in rejection.problems[0].message
    detail = rejection.to_json()["detail"][0]
    assert detail["loc"] == ["records", 3, field] and reason in detail["msg"]


def test_both_paths_report_the_same_problems_in_record_then_field_order(schema):
    records = [record() for _ in range(40)]
    records[2] = record(age=5, region=7, colour="x")
    records[30] = record(tenure_months="a", payment_method=None, satisfaction_score=None)
    records[7] = "not an object"
    policy = {"missing_values": "reject"}
    answers = []
    for columnar in (False, True):
        with pytest.raises(RequestRejected) as caught:
            validator(schema, **policy).validate(copy.deepcopy(records), columnar=columnar)
        answers.append([(p.record_index, p.field, p.message) for p in caught.value.problems])
    assert answers[0] == answers[1]
    assert [(i, f) for i, f, _ in answers[0]] == [
        (2, "colour"),
        (2, "age"),
        (2, "region"),
        (7, None),
        (30, "tenure_months"),
        (30, "satisfaction_score"),
        (30, "payment_method"),
    ]


def test_problems_are_capped_but_counted(schema):
    records = [record(age=1) for _ in range(200)]
    with pytest.raises(RequestRejected) as caught:
        RequestValidator(schema, RequestPolicy(), max_problems=10).validate(records)
    body = caught.value.to_json()
    assert len(body["detail"]) == 10
    assert body["problems_not_shown"] == 190
    assert "200 problem(s)" in body["error"]


def test_empty_and_oversized_requests(schema):
    with pytest.raises(RequestRejected) as empty:
        validator(schema).validate([])
    assert empty.value.status == 422
    with pytest.raises(RequestRejected) as large:
        validator(schema, max_records=3).validate([record()] * 4)
    assert large.value.status == 413
    assert "max_records" in large.value.message


@pytest.mark.parametrize("columnar", [False, True])
def test_unseen_categories_are_accepted_and_counted_by_default(schema, columnar):
    records = [record() for _ in range(20)]
    records[4] = record(payment_method="digital_wallet")
    records[9] = record(payment_method="digital_wallet", region="mars")
    validated = validator(schema).validate(records, columnar=columnar)
    assert validated.unseen == {"payment_method": 2, "region": 1}
    position = schema.categorical_features.index("payment_method")
    assert validated.categorical[position][4] == "digital_wallet"


@pytest.mark.parametrize("columnar", [False, True])
def test_unseen_categories_can_be_rejected(schema, columnar):
    records = [record() for _ in range(20)]
    records[4] = record(payment_method="digital_wallet")
    with pytest.raises(RequestRejected) as caught:
        validator(schema, unseen_categories="reject").validate(records, columnar=columnar)
    problem = caught.value.problems[0]
    assert (problem.record_index, problem.field) == (4, "payment_method")
    assert "not an allowed value" in problem.message and "bank_transfer" in problem.message


@pytest.mark.parametrize("columnar", [False, True])
def test_nulls_are_missing_values_by_default_or_rejected(schema, columnar):
    records = [record() for _ in range(20)]
    records[1] = record(satisfaction_score=None, region=None)
    validated = validator(schema).validate(copy.deepcopy(records), columnar=columnar)
    assert validated.missing == {"satisfaction_score": 1, "region": 1}
    column = schema.numeric_features.index("satisfaction_score")
    assert math.isnan(validated.numeric[1, column])
    assert validated.categorical[schema.categorical_features.index("region")][1] is None
    with pytest.raises(RequestRejected) as caught:
        validator(schema, missing_values="reject").validate(records, columnar=columnar)
    assert {p.field for p in caught.value.problems} == {"satisfaction_score", "region"}
    assert all("must not be null" in p.message for p in caught.value.problems)


def test_unknown_fields_can_be_ignored_and_never_reach_the_log(schema):
    one = record(colour="red", challenger_probability=0.5)
    validated = validator(schema, unknown_fields="ignore").validate([one])
    assert "colour" not in validated.records[0]
    assert "challenger_probability" not in validated.records[0]


@pytest.mark.parametrize("columnar", [False, True])
def test_valid_records_come_out_as_arrays_in_schema_order(schema, columnar):
    records = [record(customer_id=i, event_time="2026-01-02T03:04:05+02:00") for i in range(20)]
    records[0]["tenure_months"] = 7.0  # an integral float is an integer
    validated = validator(schema).validate(records, columnar=columnar)
    assert validated.numeric.shape == (20, len(schema.numeric_features))
    assert validated.numeric.dtype == np.float64
    assert validated.numeric[0, 0] == 7.0 and validated.numeric[1, 0] == 6.0
    assert [column[0] for column in validated.categorical] == [
        GOOD[c] for c in schema.categorical_features
    ]
    assert validated.records[5]["event_time"] == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert validated.unseen == {} and validated.missing == {}


def test_timestamps_naive_means_utc():
    assert parse_timestamp("2026-01-02T03:04:05") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_timestamp("2026-01-02T03:04:05Z") == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_timestamp("2026-13-02") is None
    assert parse_timestamp(None) is None


# -- configuration ------------------------------------------------------------------------


def test_the_projects_serving_configuration_loads():
    settings = load_serving_settings(PROJECT_ROOT)
    assert settings.models["champion"] == "shadowdrift-churn-champion:latest"
    assert settings.request.unseen_categories == "accept"
    assert settings.shadow.mode == "process"
    assert settings.host == "127.0.0.1"
    assert settings.prediction_log.path == PROJECT_ROOT / "data/07_model_output/prediction_log"
    assert settings.log_durability.mode == "buffered"
    assert settings.registered_model_name == base_parameters()["model_registry"]["name"]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"shadow": {"sample_rate": 2}}, "serving.shadow.sample_rate"),
        ({"shadow": {"mode": "fork"}}, "serving.shadow.mode"),
        ({"shadow": {"process_nice": 25}}, "serving.shadow.process_nice"),
        (
            {"shadow": {"circuit_breaker": {"failures": 0}}},
            "serving.shadow.circuit_breaker.failures",
        ),
        ({"admission": {"max_in_flight": 0}}, "serving.admission.max_in_flight"),
        ({"rate_limit": {"key": "cookie"}}, "serving.rate_limit.key"),
        ({"rate_limit": {"requests_per_s": 0}}, "serving.rate_limit.requests_per_s"),
        ({"host": "localhost"}, "serving.host"),
        ({"shutdown": {"drain_s": -1}}, "serving.shutdown.drain_s"),
        ({"request": {"max_string_length": 0}}, "serving.request.max_string_length"),
        ({"request": {"max_records": 0}}, "serving.request.max_records"),
        ({"request": {"unseen_categories": "maybe"}}, "serving.request.unseen_categories"),
        ({"models": {"champion": ""}}, "serving.models.champion"),
        ({"models": {"challenger": 3}}, "serving.models.challenger"),
        ({"workers": "two"}, "serving.workers"),
        ({"prediction_log": {"path": ""}}, "serving.prediction_log.path"),
        ({"log": {"durability": "sync"}}, "serving.log.durability"),
        # a misspelt key must not leave an audit log buffered unnoticed
        ({"log": {"durabilty": "acknowledged"}}, "serving.log has unknown keys"),
        ({"log": {"segment_max_bytes": 0}}, "serving.log.segment_max_bytes"),
        ({"log": {"segment_max_age_s": 0}}, "serving.log.segment_max_age_s"),
    ],
)
def test_bad_serving_configuration_names_the_key(change, key):
    params = copy.deepcopy(base_parameters())
    for section, value in change.items():
        if isinstance(value, dict):
            params["serving"].setdefault(section, {}).update(value)
        else:
            params["serving"][section] = value
    with pytest.raises(ServingConfigError, match=key.replace(".", r"\.")):
        parse_serving_settings(params, Path("/tmp"))


def test_relative_paths_follow_the_data_root(monkeypatch, tmp_path):
    monkeypatch.setenv("SHADOWDRIFT_DATA_ROOT", str(tmp_path))
    settings = parse_serving_settings(base_parameters(), Path("/somewhere"))
    assert settings.prediction_log.path == tmp_path / "data/07_model_output/prediction_log"
    monkeypatch.setenv("SHADOWDRIFT_RELOAD_TOKEN", "s3cret")
    assert settings.reload_token_value() == "s3cret"
