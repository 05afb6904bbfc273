#!/usr/bin/env bash
# Installs LiteLLM's proxy into its own virtual environment, bench/peers/litellm/.venv, so that
# `make bench` can compare glasskey with it. Run once; the harness uses it when it exists.
# The version is pinned so that a comparison is repeatable (1.107.0 was a compromised release;
# 1.108.10, .13 and .14 pin litellm-proxy-extras/litellm-enterprise builds the index does not serve).
set -euo pipefail
LITELLM_VERSION="${LITELLM_VERSION:-1.108.5}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/litellm/.venv"
PYTHON="${PYTHON:-python3}"

# The harness looks for $VENV/bin/litellm, which exists only once the install below succeeded.
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "litellm[proxy]==${LITELLM_VERSION}"
"$VENV/bin/litellm" --version
echo "LiteLLM ${LITELLM_VERSION} installed in $VENV"
