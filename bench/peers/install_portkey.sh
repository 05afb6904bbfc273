#!/usr/bin/env bash
# Installs Portkey's open-source gateway (npm @portkey-ai/gateway, Node) under bench/peers/portkey/,
# so that `make bench` can compare glasskey with it. Run once; the harness uses it when it exists.
# The version is pinned so that a comparison is repeatable; node_modules is never committed.
set -euo pipefail
PORTKEY_VERSION="${PORTKEY_VERSION:-1.15.2}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DIR="$HERE/portkey"

command -v node >/dev/null || { echo "Portkey's gateway needs Node.js 18+ (apt-get install nodejs npm)" >&2; exit 1; }
mkdir -p "$DIR"
cd "$DIR"
test -f package.json || echo '{"name": "glasskey-bench-portkey", "private": true}' > package.json
npm install --no-audit --no-fund --omit=dev --save-exact "@portkey-ai/gateway@${PORTKEY_VERSION}"
# The harness looks for this file, which exists only once the install above succeeded.
test -f node_modules/@portkey-ai/gateway/build/start-server.js
echo "Portkey gateway ${PORTKEY_VERSION} installed in $DIR (node $(node --version))"
