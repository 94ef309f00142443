"""zeroserve: serverless, scale-to-zero model serving on KServe and Knative.

The public API is what ``__all__`` lists; everything else is private.
"""

from zeroserve.errors import (
    InvalidPayload,
    LoadError,
    PayloadTooLarge,
    PredictError,
    RequestError,
    SpecError,
    UsageError,
    ZeroserveError,
)
from zeroserve.llm.engine import LLMEngine
from zeroserve.spec.decorator import predictor, spec_of
from zeroserve.spec.spec import (
    Batching,
    ClusterValue,
    PredictorSpec,
    Traffic,
    config_map,
    secret,
)

__version__ = "0.1.0"

__all__ = [
    "Batching",
    "ClusterValue",
    "InvalidPayload",
    "LLMEngine",
    "LoadError",
    "PayloadTooLarge",
    "PredictError",
    "PredictorSpec",
    "RequestError",
    "SpecError",
    "Traffic",
    "UsageError",
    "ZeroserveError",
    "__version__",
    "config_map",
    "predictor",
    "secret",
    "spec_of",
]
