from functools import partial, update_wrapper

from kedro.pipeline import Pipeline, node

from .nodes import log_candidates, split_train_validation, train_candidate

CANDIDATES = ("gbm", "mlp")


def _train(name: str):
    func = partial(train_candidate, name=name)
    update_wrapper(func, train_candidate)
    return func


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                split_train_validation,
                inputs=["model_input_train", "params:schema", "params:training"],
                outputs=["model_input_train_fit", "model_input_validation"],
                name="split_train_validation",
                tags=["training"],
            ),
            *[
                node(
                    _train(name),
                    inputs=[
                        "model_input_train_fit",
                        "model_input_validation",
                        "params:schema",
                        "params:training",
                    ],
                    outputs=f"models_{name}",
                    name=f"train_{name}",
                    tags=["training"],
                )
                for name in CANDIDATES
            ],
            node(
                log_candidates,
                inputs=[
                    "model_input_validation",
                    "params:training",
                    *[f"models_{n}" for n in CANDIDATES],
                ],
                outputs=["models_training_summary", "reporting_training_metrics"],
                name="log_candidates_to_mlflow",
                tags=["training", "mlflow"],
            ),
        ]
    )
