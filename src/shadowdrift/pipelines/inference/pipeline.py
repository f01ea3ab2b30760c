from kedro.pipeline import Pipeline, node

from .nodes import score_production


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                score_production,
                inputs=[
                    "raw_production",
                    "models_registry_aliases",
                    "params:schema",
                    "params:inference",
                    "params:model_registry",
                ],
                outputs="model_output_prediction_log",
                name="score_production_in_shadow",
                tags=["inference"],
            ),
        ]
    )
