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

work=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

echo "== building cmd/serve"
go build -o "$work/serve" ./cmd/serve

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18731)
base="http://127.0.0.1:${port}"
"$work/serve" --model testdata/stories260K --quantize none --chat-template llama-3.1 \
	--served-model-name stories --served-model-name stories-alias \
	--host 127.0.0.1 --port "$port" --api-key "$API_KEY" --threads 2 --log-format json \
	>"$work/serve.log" 2>&1 &
server_pid=$!

echo "== waiting for ${base}/health"
for _ in $(seq 1 600); do
	if curl -fsS "${base}/health" >/dev/null 2>&1; then
		break
	fi
	if ! kill -0 "$server_pid" 2>/dev/null; then
		echo "server exited before becoming healthy:"
		cat "$work/serve.log"
		exit 1
	fi
	sleep 0.1
done
curl -fsS "${base}/health" >/dev/null || { echo "server not healthy"; cat "$work/serve.log"; exit 1; }

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
