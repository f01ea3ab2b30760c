"""Build the one compiled piece: the service's forest kernel (src/shadowdrift/serving/_forest.c).

Everything else is in pyproject.toml. The extension is optional: without a C compiler the
package still installs and the service scores trees with scikit-learn's own routine (slower on
batches; /model_info says which kernel is in use, docs/serving.md).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "shadowdrift.serving._forest",
            sources=["src/shadowdrift/serving/_forest.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
