"""zeroserve.predictors: ready predictors for common model formats.

They are written against the public ``@predictor`` contract (``from zeroserve import predictor``),
like any user model, and may use ``zeroserve.coldstart``.
"""
