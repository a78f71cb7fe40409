# Sourced by the end-to-end scripts: a work directory removed on exit, a
# built cmd/serve, and start_serve, which runs it on a free loopback port
# and waits for /health. Sets work, base and server_pid.
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

# start_serve ARGS...: serve ARGS on 127.0.0.1 (log in $work/serve.log).
start_serve() {
	local port
	port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null || echo 18731)
	base="http://127.0.0.1:${port}"
	"$work/serve" "$@" --host 127.0.0.1 --port "$port" --log-format json >"$work/serve.log" 2>&1 &
	server_pid=$!
	echo "== waiting for ${base}/health"
	for _ in $(seq 1 600); do
		if curl -fsS "${base}/health" >/dev/null 2>&1; then
			return 0
		fi
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "server exited before becoming healthy:"
			cat "$work/serve.log"
			exit 1
		fi
		sleep 0.1
	done
	echo "server not healthy"
	cat "$work/serve.log"
	exit 1
}
