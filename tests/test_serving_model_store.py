"""Which stored model a configured tag resolves to, with and without a built Bento's aliases."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import bentoml
import pytest
from bentoml.exceptions import NotFound

from shadowdrift.serving import model_store


def stored(tag: str) -> Any:
    return SimpleNamespace(
        tag=bentoml.Tag.from_taglike(tag),
        info=SimpleNamespace(metadata={"format": model_store.FORMAT}),
    )


@pytest.fixture
def store(monkeypatch):
    """A store where alias "champion" is pinned (as in a built Bento) to champion version v1."""
    models = {
        "champion": stored("shadowdrift-churn-champion:v1"),
        "shadowdrift-churn-champion:latest": stored("shadowdrift-churn-champion:v2"),
        "shadowdrift-churn-challenger:latest": stored("shadowdrift-churn-challenger:v7"),
    }

    def get(tag: str, **_: Any) -> Any:
        if tag not in models:
            raise NotFound(f"no {tag}")
        return models[tag]

    # bentoml.models is a lazily loaded module: replace what model_store sees instead
    fake = SimpleNamespace(models=SimpleNamespace(get=get), Tag=bentoml.Tag)
    monkeypatch.setattr(model_store, "bentoml", fake)
    return models


def test_a_built_bentos_alias_pins_the_version_of_the_configured_model(store):
    model = model_store.resolve("shadowdrift-churn-champion:latest", alias="champion")
    assert str(model.tag) == "shadowdrift-churn-champion:v1"


def test_configuration_naming_another_model_wins_over_the_alias(store):
    # e.g. conf/local swapping the roles: the alias "champion" must not bring the old one back
    model = model_store.resolve("shadowdrift-churn-challenger:latest", alias="champion")
    assert str(model.tag) == "shadowdrift-churn-challenger:v7"


def test_a_reload_ignores_the_alias(store):
    model = model_store.resolve("shadowdrift-churn-champion:latest")
    assert str(model.tag) == "shadowdrift-churn-champion:v2"


def test_a_missing_model_names_the_command_to_run(store):
    with pytest.raises(model_store.ModelStoreError, match="kedro run --pipelines packaging"):
        model_store.resolve("shadowdrift-churn-nothing:latest", alias="champion")
