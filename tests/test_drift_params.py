"""Tests for the drift parameters (src/shadowdrift/drift_params.py)."""

from __future__ import annotations

import json
import re

import pytest

from shadowdrift import drift_params
from shadowdrift.drift_params import DriftConfigError, DriftParams


def test_empty_parameters_give_the_documented_defaults():
    params = DriftParams.from_params(None)
    assert params == DriftParams() == DriftParams.from_params({})
    assert params.chunking.by == "period" and params.chunking.period == "W"
    assert params.chunking.min_rows == 500
    assert params.psi.alert == 0.25 and params.psi.warn == 0.1
    assert params.rules.psi.consecutive_chunks == 1
    assert params.rules.multivariate.consecutive_chunks == 2
    assert params.rules.univariate.enabled is False
    assert params.nannyml.continuous_methods == ("kolmogorov_smirnov", "jensen_shannon")


def test_the_module_docstring_documents_every_key_with_its_default():
    doc = drift_params.__doc__
    resolved = DriftParams().to_dict()

    def walk(section: dict, path: list[str]):
        for key, value in section.items():
            if isinstance(value, dict):
                yield from walk(value, [*path, key])
            else:
                yield [*path, key], value

    for path, default in walk(resolved, []):
        key = path[-1]
        lines = [line for line in doc.splitlines() if re.match(rf"\s*{key}:", line)]
        assert lines, f"drift.{'.'.join(path)} is not documented"
        shown = json.dumps(default) if not isinstance(default, str) else default
        shown = {"true": "true", "false": "false", "null": "null"}.get(shown, shown)
        assert any(
            shown.replace('"', "").replace(" ", "") in line.replace(" ", "") for line in lines
        ), f"drift.{'.'.join(path)}: default {shown} not in {lines}"


def test_parameters_round_trip_through_to_dict():
    params = DriftParams.from_params(
        {
            "chunking": {"by": "size", "size": 1000, "min_rows": 800},
            "psi": {"alert": 0.3},
            "rules": {
                "psi": {"consecutive_chunks": 2},
                "estimated_performance": {"floor": 0.7},
                "univariate": {"enabled": True, "methods": ["jensen_shannon"]},
            },
        }
    )
    assert DriftParams.from_params(json.loads(json.dumps(params.to_dict()))) == params
    assert params.rules.estimated_performance.floor == 0.7
    assert params.rules.univariate.methods == ("jensen_shannon",)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"chunks": {}}, "drift: unknown key(s) 'chunks'"),
        ({"chunking": {"by": "rows"}}, "drift.chunking.by must be one of period, size"),
        ({"chunking": {"period": "2W"}}, "drift.chunking.period: '2W' is a multiple"),
        ({"chunking": {"period": "ME"}}, "drift.chunking.period: 'ME' is not a pandas period"),
        ({"chunking": {"period": "fortnight"}}, "drift.chunking.period: 'fortnight'"),
        ({"chunking": {"size": 0}}, "drift.chunking.size must be an integer of at least 1"),
        ({"chunking": {"by": "size", "size": 100, "min_rows": 200}}, "drift.chunking.min_rows"),
        ({"psi": {"warn": 0.3}}, "drift.psi.warn (0.3) must not exceed drift.psi.alert"),
        ({"psi": {"n_bins": 1.5}}, "drift.psi.n_bins must be an integer"),
        ({"nannyml": {"continuous_methods": ["chi2"]}}, "drift.nannyml.continuous_methods"),
        ({"nannyml": {"performance_metrics": ["auc"]}}, "unknown name(s) 'auc'"),
        ({"nannyml": {"pca_components": 1.5}}, "drift.nannyml.pca_components"),
        ({"nannyml": {"multivariate": "yes"}}, "drift.nannyml.multivariate must be true or false"),
        ({"rules": {"psi": {"consecutive": 2}}}, "drift.rules.psi: unknown key(s) 'consecutive'"),
        ({"rules": {"psi": {"consecutive_chunks": 0}}}, "drift.rules.psi.consecutive_chunks"),
        ({"rules": {"realised_performance": {"max_drop": 2}}}, "max_drop must be a number"),
        ({"rules": {"estimated_performance": {"floor": "high"}}}, "floor must be a number"),
        ({"rules": []}, "drift.rules must be a mapping"),
    ],
)
def test_bad_parameters_fail_naming_the_key(params, message):
    with pytest.raises(DriftConfigError) as error:
        DriftParams.from_params(params)
    assert message in str(error.value)


@pytest.mark.parametrize("period", ["D", "W", "W-MON", "M", "Q", "7D", "14D", "12h"])
def test_usable_periods_are_accepted(period):
    assert DriftParams.from_params({"chunking": {"period": period}}).chunking.period == period
