"""The constrained values a spec is made of: DNS labels, Kubernetes quantities, bounded numbers."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_LABEL_MAX = 63
# Kubernetes resource quantities: "500m", "2", "1.5", "1Gi", "512Mi", "1e3".
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?([eE][0-9]+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

PositiveInt = Annotated[int, Field(gt=0)]
MAX_BATCH_SIZE = 65536
MAX_LATENCY_MS = 60_000.0  # a minute: longer is a queue, not a batch
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
