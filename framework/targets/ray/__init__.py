"""Ray Serve as a second engine: each @predictor becomes a Ray Serve application.

The HTTP front is zeroserve's own server (KServe's ``ModelServer`` with zeroserve's guard), in the
process that ran ``zeroserve serve --engine ray``; it calls each model's replicas through Ray Serve
deployment handles, which hold requests while Ray starts a replica from zero. The replicas run the
engine-neutral ``PredictorRunner``, so validation, batching and error bodies are the local ones.
Only this package imports Ray.
"""
