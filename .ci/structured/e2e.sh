#!/usr/bin/env bash
# Structured outputs and tool calling through real clients: builds
# cmd/serve, generates a tiny random-weight Llama 3-style model
# (cmd/genmodel, 8k context for the tools' prompt), serves it, and runs
# e2e.mjs with the openai npm package (zod helpers, streamed tool calls),
# zod and the OpenAI Agents SDK, installed into .ci/structured/node_modules
# (git-ignored). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

echo "== structured e2e: installing openai, zod, @openai/agents"
npm install --prefix .ci/structured --no-save --no-package-lock --no-audit --no-fund --silent \
	openai@6.49.0 zod@4.6.7 @openai/agents@0.20.0

work=$(mktemp -d)
server_pid=
cleanup() {
	if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
		kill -KILL "$server_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/serve" ./cmd/serve
go run ./cmd/genmodel --out "$work/tiny" --max-pos 8192 >/dev/null
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18732)
"$work/serve" --model "$work/tiny" --quantize none --served-model-name tiny --host 127.0.0.1 --port "$port" --threads 2 \
	--log-format json >"$work/serve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do
	curl -fsS "http://127.0.0.1:${port}/health" >/dev/null 2>&1 && break
	if ! kill -0 "$server_pid" 2>/dev/null; then
		cat "$work/serve.log"
		exit 1
	fi
	sleep 0.1
done
if ! SERVE_URL="http://127.0.0.1:${port}" MODEL=tiny node .ci/structured/e2e.mjs; then
	echo "server log (last 40 lines):"
	tail -n 40 "$work/serve.log"
	exit 1
fi
