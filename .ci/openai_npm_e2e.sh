#!/usr/bin/env bash
# End-to-end check of the server with the official `openai` npm package:
# builds cmd/serve, starts it on the bundled tiny model (testdata/stories260K,
# with the built-in llama-3.1 chat template so that chat works too), waits for
# /health, runs .ci/openai_npm_e2e.mjs (chat, stream, completions, models
# list, 404/401/400 errors), then stops the server with SIGTERM and checks
# that it drains and exits 0. Exits non-zero on any failure.
#
# Needs node >= 18 and npm; installs openai@$OPENAI_NPM_VERSION into
# .ci/node_modules (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."

OPENAI_NPM_VERSION=${OPENAI_NPM_VERSION:-6.49.0}
API_KEY=e2e-secret-key

echo "== openai npm e2e: installing openai@${OPENAI_NPM_VERSION}"
npm install --prefix .ci --no-save --no-package-lock --no-audit --no-fund --silent "openai@${OPENAI_NPM_VERSION}"
node -e "const v = require('./.ci/node_modules/openai/package.json').version; if (v !== '${OPENAI_NPM_VERSION}') { console.error('installed openai ' + v); process.exit(1) }"

source .ci/serve_lib.sh
start_serve --model testdata/stories260K --quantize none --chat-template llama-3.1 \
	--served-model-name stories --served-model-name stories-alias --api-key "$API_KEY" --threads 2

echo "== running the openai npm client"
status=0
OPENAI_BASE_URL="${base}/v1" OPENAI_API_KEY="$API_KEY" node .ci/openai_npm_e2e.mjs || status=$?

echo "== SIGTERM: graceful drain"
kill -TERM "$server_pid"
serve_status=0
wait "$server_pid" || serve_status=$?
server_pid=
if [ "$status" -ne 0 ] || [ "$serve_status" -ne 0 ]; then
	echo "client status $status, server exit status $serve_status; server log:"
	cat "$work/serve.log"
	exit 1
fi
grep -q '"msg":"stopped"' "$work/serve.log" || { echo "server did not log a clean stop"; cat "$work/serve.log"; exit 1; }
echo "== openai npm e2e: ok"
