#!/usr/bin/env bash
# Weft demo: weftd on its embedded default, config from a directory and from
# weftctl, and two real proxyless gRPC workloads routed by VirtualService
# through grpc-go's xDS client. Everything binds to loopback; every process
# started here is stopped on exit (Ctrl-C included).
#
#   DEMO_DURATION=30s  stop by itself after the steps and this much live traffic (default: run until Ctrl-C)
#   DEMO_XDS_ADDR / DEMO_MON_ADDR   weftd addresses (default 127.0.0.1:15010 / 127.0.0.1:15014)
set -euo pipefail
cd "$(dirname "$0")/.."

XDS_ADDR=${DEMO_XDS_ADDR:-127.0.0.1:15010}
MON_ADDR=${DEMO_MON_ADDR:-127.0.0.1:15014}
DURATION=${DEMO_DURATION:-}
BIN=${DEMO_BIN:-$PWD/bin}
WORK=$(mktemp -d -t weft-demo.XXXXXX)
PIDS=()
FAILED=0

cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "stopping..."; exit 130' INT TERM

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
check() { # check NAME CONDITION-COMMAND...
	local name=$1; shift
	if "$@"; then echo "  [ok]   $name"; else echo "  [FAIL] $name"; FAILED=$((FAILED + 1)); fi
}
weftctl() { "$BIN/weftctl" --server "$MON_ADDR" --data-dir "$WORK/data" "$@"; }

[ -x "$BIN/weftd" ] || { echo "run 'make build' first (make demo does it)"; exit 1; }
go build -o "$BIN/grpc-echo" ./examples/grpc-echo

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo $((20000 + RANDOM % 20000)); }
V1_PORT=$(free_port); V2_PORT=$(free_port)

bold "1. Two versions of a gRPC service (plain apps, no proxy: proxyless gRPC)"
"$BIN/grpc-echo" -serve v1 -addr "127.0.0.1:$V1_PORT" >"$WORK/echo-v1.log" 2>&1 & PIDS+=($!)
"$BIN/grpc-echo" -serve v2 -addr "127.0.0.1:$V2_PORT" >"$WORK/echo-v2.log" 2>&1 & PIDS+=($!)
echo "echo v1 on 127.0.0.1:$V1_PORT, echo v2 on 127.0.0.1:$V2_PORT"

mkdir -p "$WORK/config"
cp examples/bookinfo/*.yaml "$WORK/config/"
sed -e "s/@V1_PORT@/$V1_PORT/" -e "s/@V2_PORT@/$V2_PORT/" examples/demo/echo.yaml.in >"$WORK/config/echo.yaml"

bold "2. Validate the config offline"
run "$BIN/weftctl" validate -f "$WORK/config"

bold "3. Start weftd (embedded store in a temp data dir, config dir watched)"
"$BIN/weftd" --config-dir "$WORK/config" --data-dir "$WORK/data" --secure-addr "${DEMO_SECURE_ADDR:-127.0.0.1:15012}" \
	--insecure-xds-addr "$XDS_ADDR" --monitoring-addr "$MON_ADDR" >"$WORK/weftd.log" 2>&1 & PIDS+=($!)
for i in $(seq 1 100); do
	if weftctl get all >/dev/null 2>&1; then break; fi
	if ! kill -0 "${PIDS[-1]}" 2>/dev/null; then echo "weftd exited:"; cat "$WORK/weftd.log"; exit 1; fi
	sleep 0.1
done
run weftctl get all

bold "4. A proxyless gRPC client calls xds:///echo.default.svc.cluster.local:7070 (no VirtualService yet)"
calls() { "$BIN/grpc-echo" -target xds:///echo.default.svc.cluster.local:7070 -xds "$XDS_ADDR" -node "sidecar~127.0.0.1~$1.default~default.svc.cluster.local" -n "$2" "${@:3}"; }
out=$(calls batch-1 100); echo "100 calls: $out"
check "both versions answer without a VirtualService" bash -c "[[ '$out' == *v1=* && '$out' == *v2=* ]]"

bold "5. Canary: weftctl apply a VirtualService sending 90% to v1, 10% to v2, and user jason to v2"
run weftctl apply -f examples/demo/echo-canary.yaml
sleep 0.5
out=$(calls batch-2 200); echo "200 calls: $out"
v2=$(sed -n 's/.*v2=\([0-9]*\).*/\1/p' <<<"$out"); v2=${v2:-0}
check "about 10% of calls on v2 (got $v2/200)" test "$v2" -ge 5 -a "$v2" -le 45
out=$(calls batch-3 50 -header end-user=jason); echo "50 calls as jason: $out"
check "jason always gets v2" test "$out" = "v2=50"

bold "6. A bad change is refused and nothing is lost"
set +e
run weftctl apply -f examples/demo/echo-bad.yaml
rc=$?
set -e
check "bad VirtualService refused (exit $rc)" test "$rc" -ne 0
out=$(calls batch-4 100); echo "100 calls after the refused change: $out"
check "traffic still follows the last good canary" bash -c "[[ '$out' != *errors=* ]]"

bold "7. Shift the canary to 50/50"
run weftctl apply -f examples/demo/echo-5050.yaml
sleep 0.5
out=$(calls batch-5 200); echo "200 calls: $out"
v2=$(sed -n 's/.*v2=\([0-9]*\).*/\1/p' <<<"$out"); v2=${v2:-0}
check "about half of calls on v2 (got $v2/200)" test "$v2" -ge 60 -a "$v2" -le 140

bold "8. A long-running client, and what weftd knows about it"
calls live 50 -every 2s >"$WORK/live.log" 2>&1 & PIDS+=($!)
sleep 2
run weftctl proxy-status
check "the live client is SYNCED" bash -c "'$BIN/weftctl' --server '$MON_ADDR' --data-dir '$WORK/data' proxy-status | grep -q 'live.default.*SYNCED.*SYNCED.*SYNCED.*SYNCED'"
echo
echo "Where to look next:"
echo "  $BIN/weftctl --server $MON_ADDR --data-dir $WORK/data get vs -o yaml"
echo "  curl -s http://$MON_ADDR/metrics | grep -E 'pilot_xds|weft_'"
echo "  curl -s http://$MON_ADDR/debug/syncz"
echo "  weftd log: $WORK/weftd.log"

bold "9. Live traffic (one line every 2s: which version answered)"
if [ -n "$DURATION" ]; then
	end=$(( $(date +%s) + $(sed 's/s$//' <<<"$DURATION") ))
else
	end=$(( $(date +%s) + 1000000000 ))
	echo "(Ctrl-C to stop)"
fi
shown=0
while [ "$(date +%s)" -lt "$end" ]; do
	lines=$(wc -l <"$WORK/live.log")
	if [ "$lines" -gt "$shown" ]; then tail -n $((lines - shown)) "$WORK/live.log" | sed 's/^/  live: /'; shown=$lines; fi
	sleep 1
done

bold "Summary"
if [ "$FAILED" -gt 0 ]; then
	echo "$FAILED check(s) failed; weftd log follows"
	tail -n 50 "$WORK/weftd.log"
	exit 1
fi
echo "all checks passed"
