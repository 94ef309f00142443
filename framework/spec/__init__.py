"""The declaration: ``@predictor``, the frozen ``PredictorSpec`` and the request schema from type
hints. Pure data: imports nothing of serving, targets or the local runtime."""
