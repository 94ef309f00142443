#!/usr/bin/env bash
# The peers of `python -m bench peers`, each in a virtual environment of its own (their FastAPI,
# Starlette and uvicorn pins conflict with KServe's and with each other's): MLServer, LitServe and
# BentoML under .bench-envs/, and wrk, the load generator. Ray Serve comes from the ray tox env
# (tox -e ray --notest). Each environment is reused once complete.
set -euo pipefail
cd "$(dirname "$0")/.."
sklearn="$(python3 -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null || echo 1.9.1)"
hack/mlserver-env.sh .bench-envs/mlserver
for peer in "litserve==0.2.19" "bentoml==1.4.40"; do
    folder=".bench-envs/${peer%%==*}"
    if [ -f "$folder/.complete" ]; then
        continue
    fi
    rm -rf "$folder"
    python3 -m venv "$folder"
    "$folder/bin/pip" install -q --disable-pip-version-check "$peer" "scikit-learn==$sklearn" joblib
    touch "$folder/.complete"
done
if ! command -v wrk >/dev/null; then
    (apt-get install -y -q wrk >/dev/null 2>&1) || echo "wrk not installed (apt-get install wrk): the bench falls back to its Python load generator" >&2
fi
