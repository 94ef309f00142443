#!/usr/bin/env bash
# MLServer with its scikit-learn and XGBoost runtimes, in a virtual environment of its own (its
# FastAPI and Starlette pins conflict with KServe's): the baseline of `python -m bench builtins`.
# Usage: hack/mlserver-env.sh [FOLDER]   (default .bench-envs/mlserver; reused when complete)
set -euo pipefail
folder="${1:-.bench-envs/mlserver}"
if [ -x "$folder/bin/mlserver" ] && [ -f "$folder/.complete" ]; then
    exit 0
fi
rm -rf "$folder"
python3 -m venv "$folder"
"$folder/bin/pip" install -q --disable-pip-version-check \
    "mlserver==1.7.1" "mlserver-sklearn==1.7.1" "mlserver-xgboost==1.7.1" "scikit-learn==$(python3 -c 'import sklearn; print(sklearn.__version__)' 2>/dev/null || echo 1.9.1)"
touch "$folder/.complete"
