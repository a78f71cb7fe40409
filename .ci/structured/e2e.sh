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

source .ci/serve_lib.sh
go run ./cmd/genmodel --out "$work/tiny" --max-pos 8192 >/dev/null
start_serve --model "$work/tiny" --quantize none --served-model-name tiny --threads 2
if ! SERVE_URL="$base" MODEL=tiny node .ci/structured/e2e.mjs; then
	echo "server log (last 40 lines):"
	tail -n 40 "$work/serve.log"
	exit 1
fi
kill -TERM "$server_pid"
wait "$server_pid" || { echo "serve did not stop cleanly"; tail -n 20 "$work/serve.log"; exit 1; }
server_pid=
