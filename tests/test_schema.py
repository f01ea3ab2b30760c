"""Schema validation: every kind of violation, and a malformed schema, gives a clear error."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest

from shadowdrift import simulation as sim
from shadowdrift.schema import DataValidationError, SchemaConfigError, parse_schema, validate_frame


@pytest.fixture(scope="module")
def schema_config(base_params):
    return base_params["schema"]


@pytest.fixture(scope="module")
def schema(schema_config):
    return parse_schema(schema_config)


@pytest.fixture
def events() -> pd.DataFrame:
    frame, _ = sim.simulate_history(300, 5, "2024-01-01", 365, 30)
    return frame


def error_for(frame, schema) -> str:
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame, schema, "raw_events")
    return str(info.value)


def test_the_configured_schema_matches_the_simulator(schema):
    assert schema.features == list(sim.FEATURES)
    assert (schema.id, schema.timestamp, schema.target) == (
        sim.ID_COLUMN,
        sim.TIMESTAMP_COLUMN,
        sim.TARGET_COLUMN,
    )


def test_valid_data_passes_and_is_typed(events, schema):
    events["age"] = events["age"].astype("int32")
    out = validate_frame(events, schema, "raw_events")
    assert out["age"].dtype == "int64"
    assert out[sim.TARGET_COLUMN].dtype == "int8"
    assert len(out) == len(events)


def test_out_of_range_names_column_rule_and_rows(events, schema):
    events.loc[[4, 9], "tenure_months"] = -3
    message = error_for(events, schema)
    assert "column 'tenure_months'" in message
    assert "greater_than_or_equal_to(0)" in message
    assert "2 rows" in message
    assert f"customer_id={events.at[4, 'customer_id']}" in message
    assert "-3" in message


def test_unknown_category(events, schema):
    events.loc[2, "contract_type"] = "weekly"
    message = error_for(events, schema)
    assert "column 'contract_type'" in message and "isin" in message and "'weekly'" in message


def test_nulls_in_a_required_feature(events, schema):
    events.loc[7, "monthly_charges"] = np.nan
    message = error_for(events, schema)
    assert "column 'monthly_charges'" in message and "not_nullable" in message


def test_duplicate_ids(events, schema):
    events.loc[5, "customer_id"] = events.loc[6, "customer_id"]
    message = error_for(events, schema)
    assert "column 'customer_id'" in message and "field_uniqueness" in message


def test_missing_required_column(events, schema):
    message = error_for(events.drop(columns=["region"]), schema)
    assert "required column 'region' is missing" in message


def test_wrong_type_reports_the_coercion_only(events, schema):
    events["age"] = events["age"].astype(str)
    events.loc[3, "age"] = "old"
    message = error_for(events, schema)
    assert "column 'age'" in message and "coerce_dtype('int64')" in message and "'old'" in message
    assert "greater_than" not in message, "cascading failures of the same bad value are noise"


def test_bad_target(events, schema):
    events.loc[1, "churned"] = 2
    message = error_for(events, schema)
    assert "column 'churned'" in message and "isin([0, 1])" in message


def test_all_problems_are_reported_at_once(events, schema):
    events.loc[1, "tenure_months"] = -1
    events.loc[2, "region"] = "mars"
    message = error_for(events, schema)
    assert "2 problem(s)" in message


def test_empty_table_is_refused(events, schema):
    with pytest.raises(DataValidationError, match="raw_events is empty"):
        validate_frame(events.iloc[0:0], schema, "raw_events")


def test_failure_cases_are_kept_for_programmatic_use(events, schema):
    events.loc[[1, 2, 3], "age"] = 5
    with pytest.raises(DataValidationError) as info:
        validate_frame(events, schema, "raw_events")
    assert len(info.value.failure_cases) == 3


def _mutate(config, path, value):
    config = copy.deepcopy(config)
    node = config
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return config


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("id",), _DELETE, "schema.id is missing"),
        (("timestamp",), 42, "schema.timestamp must be a column name"),
        (("numeric", "age", "min"), "eighteen", "schema.numeric.age.min must be a finite number"),
        (("numeric", "age", "max"), 5, "schema.numeric.age: min (18) is greater than max (5)"),
        (("numeric", "age", "dtype"), "decimal", "schema.numeric.age.dtype must be one of"),
        (("numeric", "age", "minimum"), 1, "schema.numeric.age: unknown key(s) 'minimum'"),
        (
            ("numeric", "age", "nullable"),
            "sometimes",
            "schema.numeric.age.nullable must be true or false",
        ),
        (
            ("categorical", "region", "values"),
            [],
            "schema.categorical.region.values must be a non-empty list",
        ),
        (("categorical", "region", "values"), ["a", "a"], "lists a value twice"),
        (("categorical", "region"), ["north"], "schema.categorical.region must be a mapping"),
        (("features",), {}, "schema: unknown key(s) 'features'"),
        (("categorical", "age"), {"values": ["x"]}, "column 'age' is declared more than once"),
    ],
)
def test_malformed_schema_names_the_key(schema_config, path, value, expected):
    with pytest.raises(SchemaConfigError) as info:
        parse_schema(_mutate(schema_config, path, value))
    assert expected in str(info.value)


def test_schema_must_be_a_mapping():
    with pytest.raises(SchemaConfigError, match="schema must be a mapping"):
        parse_schema(["customer_id"])


def test_production_records_can_be_validated_leniently(events, schema):
    records = events.drop(columns=["churned"])
    records.loc[1, "payment_method"] = "digital_wallet"
    records.loc[2, "satisfaction_score"] = np.nan
    out = validate_frame(
        records,
        schema,
        "raw_production",
        require_target=False,
        allow_unseen_categories=True,
        allow_nulls=True,
    )
    assert len(out) == len(records)
