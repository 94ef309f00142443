"""Serving one process's models: the engine-neutral runner, the thin ``kserve.Model`` over it,
the KServe ``ModelServer`` it runs on, batching, HTTP limits and finding the models to serve."""
