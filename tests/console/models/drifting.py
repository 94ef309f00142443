"""A predictor served with a reference profile beside it (the test writes it): drift is drawn."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from zeroserve import predictor

Row = Annotated[list[float], Field(min_length=2, max_length=2)]


@predictor(name="drifting", cpu=None, memory=None)
class Drifting:
    def predict(self, instances: list[Row]) -> list[str]:
        return ["high" if row[0] > 50 else "low" for row in instances]
