"""Online serving: the BentoML service where the champion answers and the challenger runs in shadow.

Modules (each importable and testable without starting a server):

* ``config``: the serving parameters (``conf/<env>/parameters_serving.yml``) and the schema,
  loaded with Kedro's ``OmegaConfigLoader``.
* ``request_validation``: checks request records against the schema from configuration.
* ``fast_path``: numpy re-implementations of the fitted preprocessing and of
  HistGradientBoosting prediction, so that one record is scored without pandas.
* ``model_store``: imports registry models into the BentoML model store and loads them back.
* ``shadow``: the bounded, load-shedding challenger runner.
* ``challenger_process``: the challenger in a child process of the worker (the default mode).
* ``circuit_breaker``: skips a challenger that keeps failing, probes it after a cool-down.
* ``http_guard``: what a worker refuses before the service (body size, content type,
  overload, rate limit, shutdown drain).
* ``fault_injection``: challengers that raise, sleep or hold the GIL, for drills and tests.
* ``feedback``: the durable ground-truth log written by ``POST /feedback``.
* ``metrics``: the Prometheus metrics.
* ``core``: the request handling behind the routes, as plain Python.
* ``service``: the BentoML service itself (``bentoml serve`` from the project root).

Only ``service`` imports BentoML at module level; the arbiter process that ``bentoml serve``
starts imports it too, so it keeps its own imports light.
"""
