from kedro.pipeline import Pipeline, node

from .nodes import (
    FIGURES,
    attach_ground_truth,
    drift_metrics_text,
    monitor_drift,
    publish_drift_metrics,
    score_reference_window,
    select_drift_baseline,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            node(
                select_drift_baseline,
                inputs=[
                    "model_input_train",
                    "model_input_test",
                    "model_input_reference",
                    "raw_reference",
                    "params:schema",
                    "params:drift",
                ],
                outputs="model_input_drift_baseline",
                name="select_drift_baseline",
                tags=["drift"],
            ),
            node(
                score_reference_window,
                inputs=[
                    "model_input_drift_baseline",
                    "models_registry_aliases",
                    "params:model_registry",
                ],
                outputs=["model_output_reference_predictions", "models_monitored"],
                name="score_reference_window",
                tags=["drift"],
            ),
            node(
                attach_ground_truth,
                inputs=[
                    "model_output_prediction_log",
                    "raw_production",
                    "model_output_ground_truth",
                    "params:schema",
                    "params:drift_labels",
                ],
                outputs="model_output_drift_analysis",
                name="attach_ground_truth_to_prediction_log",
                tags=["drift"],
            ),
            node(
                monitor_drift,
                inputs=[
                    "model_output_reference_predictions",
                    "model_output_drift_analysis",
                    "models_monitored",
                    "model_input_reference",
                    "params:schema",
                    "params:drift",
                ],
                outputs=[
                    "reporting_drift_summary",
                    "reporting_retraining_decision",
                    "reporting_drift_report",
                    "reporting_drift_metrics",
                    *(f"reporting_drift_{name}" for name in FIGURES),
                ],
                name="monitor_drift_and_decide",
                tags=["drift"],
            ),
            node(
                drift_metrics_text,
                inputs="reporting_drift_summary",
                outputs="reporting_drift_metrics_prometheus",
                name="format_drift_metrics",
                tags=["drift"],
            ),
            node(
                publish_drift_metrics,
                inputs=["reporting_drift_metrics_prometheus", "params:drift_metrics"],
                outputs=None,
                name="push_drift_metrics",
                tags=["drift"],
            ),
        ]
    )
