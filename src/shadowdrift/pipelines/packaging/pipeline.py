from kedro.pipeline import Pipeline, node

from .nodes import import_registered_models


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                import_registered_models,
                # the aliases evaluation left order packaging after evaluation in __default__
                # (and in kedro-viz's lineage); the registry itself stays the source of truth
                inputs=["models_registry_aliases", "params:packaging", "params:model_registry"],
                outputs="reporting_packaged_models",
                name="import_registry_aliases_into_bentoml_store",
                tags=["packaging", "registry"],
            ),
        ]
    )
