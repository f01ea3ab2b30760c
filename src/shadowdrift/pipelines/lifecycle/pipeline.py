from kedro.pipeline import Pipeline

from ..data_engineering.pipeline import create_pipeline as data_engineering_pipeline
from ..drift.pipeline import create_pipeline as drift_pipeline
from ..evaluation.pipeline import create_pipeline as evaluation_pipeline
from ..inference.pipeline import create_pipeline as inference_pipeline
from ..packaging.pipeline import create_pipeline as packaging_pipeline
from ..training.pipeline import create_pipeline as training_pipeline

# A folder of its own, not only an entry in pipeline_registry.py: `kedro run --pipeline NAME`
# imports shadowdrift.pipelines.NAME and finds nothing else.
LIFECYCLE = (
    data_engineering_pipeline,
    training_pipeline,
    evaluation_pipeline,
    inference_pipeline,
    drift_pipeline,
    packaging_pipeline,
)


def create_pipeline(**kwargs) -> Pipeline:
    """data_engineering, training, evaluation, inference, drift and packaging, in that order."""
    return sum((create() for create in LIFECYCLE), Pipeline([]))
