#!/usr/bin/env bash
# Weft demo: a small shop (examples/shop) runs as a real mesh on this machine.
# weftd runs on its embedded default; every workload runs behind
# `weft-proxy run` in explicit mode (no root) on its own loopback address, with
# a SPIFFE identity from weftd's CA. The config shows STRICT mTLS, a 90/10
# canary that is then shifted, retries, timeouts, fault injection, an
# AuthorizationPolicy that denies one caller, and a host joining through a
# WorkloadGroup. Checks say what each step proves; a live view follows.
# Ctrl-C stops every process and removes every file this script created.
#
#   DEMO_DURATION=30s  live part's length; then a summary, exit 1 if a check failed (default: until Ctrl-C)
#   DEMO_BIN           where weftd, weftctl and weft-proxy are (default ./bin; `make demo` builds them)
#   DEMO_SECURE_ADDR / DEMO_MON_ADDR  weftd's addresses (default 127.0.0.1:15012 / 127.0.0.1:15014)
#   DEMO_MTLS_MODE     debugging only: PeerAuthentication mode to apply instead of STRICT
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DEMO_DURATION:-}
BIN=${DEMO_BIN:-$PWD/bin}
SECURE_ADDR=${DEMO_SECURE_ADDR:-127.0.0.1:15012}
MON_ADDR=${DEMO_MON_ADDR:-127.0.0.1:15014}
MTLS_MODE=${DEMO_MTLS_MODE:-STRICT}
NET=127.0.77 # workloads live on 127.0.77.x (examples/shop/config/services.yaml)
INTERVAL=5   # seconds between live-view frames

WORK=$(mktemp -d -t weft-demo.XXXXXX)
mkdir -p "$WORK/logs" "$WORK/tokens" "$WORK/config"
PGIDS=()     # one process group per workload (setsid), stopped on exit
WEFTD_PID=""
FG_PID=""    # the long-running foreground step (live view, waits), so signals cut it short
FAILED=()
PASSED=0

# group_alive PGID: a process of the group still runs (zombies, not yet reaped by this shell, do not count).
group_alive() { ps -eo pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'; }
stop_group() { # stop_group PGID: SIGTERM the group, SIGKILL what is left after 5s
	local pg=$1 i
	kill -TERM -- "-$pg" 2>/dev/null || return 0
	for i in $(seq 1 50); do
		group_alive "$pg" || return 0
		sleep 0.1
	done
	kill -KILL -- "-$pg" 2>/dev/null || true
}
cleanup() {
	trap - INT TERM
	[ -n "$FG_PID" ] && kill "$FG_PID" 2>/dev/null || true
	local pg
	for pg in "${PGIDS[@]}"; do kill -TERM -- "-$pg" 2>/dev/null || true; done
	for pg in "${PGIDS[@]}"; do stop_group "$pg"; done
	[ -n "$WEFTD_PID" ] && stop_group "$WEFTD_PID"
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo; echo "stopping after $PASSED checks passed, ${#FAILED[@]} failed (every process and $WORK go away)..."; exit 130' INT TERM

bold() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
run() { local a=("$@"); printf '$ %s\n' "${a[*]#"$PWD/"}"; "$@"; }
check() { # check NAME CONDITION-COMMAND...
	local name=$1; shift
	if "$@"; then
		echo "  [ok]   $name"; PASSED=$((PASSED + 1))
	else
		echo "  [FAIL] $name"; FAILED+=("$name")
	fi
}
weftctl() { "$BIN/weftctl" --server "$MON_ADDR" --data-dir "$WORK/data" "$@"; }
# fg CMD...: run a long step in the background and wait for it, so that
# Ctrl-C or SIGTERM interrupts it at once (bash runs traps only between commands).
fg() { "$@" & FG_PID=$!; wait "$FG_PID" || true; FG_PID=""; }
between() { awk -v x="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(x >= lo && x <= hi) }'; }
# field LINE KEY: the value of KEY=VALUE in a loadgen summary line (0 if absent).
field() { local v; v=$(grep -o "\b$2=[0-9]*" <<<"$1" | head -1 | cut -d= -f2 || true); echo "${v:-0}"; }
# metric ADDR NAME [LABEL=VALUE...]: sum of NAME's samples on the proxy at
# ADDR (admin port 15000, Prometheus text) whose labels include all given ones.
metric() {
	local addr=$1 name=$2; shift 2
	{ curl -s --max-time 3 "http://$addr:15000/stats/prometheus" || true; } | awk -v name="$name" -v want="$*" '
		index($0, name "{") == 1 {
			ok = 1; n = split(want, w, " ")
			for (i = 1; i <= n; i++) {
				split(w[i], kv, "=")
				l = kv[1] "=\"" kv[2] "\""
				if (index($0, "{" l) == 0 && index($0, "," l) == 0) ok = 0
			}
			if (ok) sum += $NF
		}
		END { printf "%d\n", sum }'
}
seconds() { # 30s, 2m, 45 -> seconds
	case $1 in
	*m) echo $(( ${1%m} * 60 )) ;;
	*s) echo "${1%s}" ;;
	*) echo "$1" ;;
	esac
}

for b in weftd weftctl weft-proxy; do
	[ -x "$BIN/$b" ] || { echo "$BIN/$b missing: run 'make build' first ('make demo' does it)"; exit 1; }
done
command -v setsid >/dev/null || { echo "the demo needs setsid (util-linux)"; exit 1; }
command -v curl >/dev/null || { echo "the demo needs curl"; exit 1; }
for a in "$NET.10:15000" "$NET.20:15000" "$NET.30:15000" "$SECURE_ADDR" "$MON_ADDR" \
	127.0.0.1:18080 127.0.0.1:18081 127.0.0.1:18082 127.0.0.1:18090; do # the apps' ports
	if (exec 3<>"/dev/tcp/${a%:*}/${a##*:}") 2>/dev/null; then
		echo "$a is already in use: is another demo running? (stop it with Ctrl-C)"; exit 1
	fi
done
if [ -n "$DURATION" ]; then
	LIVE=$(seconds "$DURATION")
	[[ $LIVE =~ ^[0-9]+$ ]] || { echo "DEMO_DURATION=$DURATION: want e.g. 30s or 2m"; exit 2; }
fi

bold "Weft demo: a shop of services on one machine"
say "weftd (control plane) and six workloads, each behind weft-proxy on its own $NET.x address."
say "Everything stays on loopback and runs as you; files go to $WORK (removed on exit)."

bold "1. Build the sample app (examples/shop: frontend, backend, ratings, loadgen)"
run go build -o "$BIN/shop" ./examples/shop

bold "2. Start weftd: embedded store in a temp data dir, CA and xDS over TLS on $SECURE_ADDR"
cmd=("$BIN/weftd" --data-dir "$WORK/data" --secure-addr "$SECURE_ADDR" --monitoring-addr "$MON_ADDR")
printf '$ %s\n' "${cmd[*]#"$PWD/"}"
setsid "${cmd[@]}" >"$WORK/logs/weftd.log" 2>&1 &
WEFTD_PID=$!
ready=false
for i in $(seq 1 100); do
	if curl -sf --max-time 1 "http://$MON_ADDR/ready" >/dev/null 2>&1 && [ -s "$WORK/data/admin.token" ]; then ready=true; break; fi
	group_alive "$WEFTD_PID" || break
	sleep 0.1
done
check "weftd ready (http://$MON_ADDR/ready)" $ready
$ready || { tail -n 20 "$WORK/logs/weftd.log"; exit 1; }

bold "3. Config: validate offline, then apply to weftd's store (examples/shop/config)"
cp examples/shop/config/*.yaml "$WORK/config/"
if [ "$MTLS_MODE" != STRICT ]; then
	say "DEMO_MTLS_MODE=$MTLS_MODE: applying PeerAuthentication $MTLS_MODE instead of STRICT (debugging only)"
	sed -i "s/mode: STRICT/mode: $MTLS_MODE/" "$WORK/config/mesh.yaml"
fi
check "config valid (weftctl validate)" run "$BIN/weftctl" validate -f "$WORK/config"
run weftctl apply -f "$WORK/config" 2>&1 | awk '!/^\[/ && !seen[$0]++' || true
in_effect() { # the last objects of the apply are in weftd's config snapshot (it debounces changes)
	local i
	for i in $(seq 1 50); do
		weftctl get workloadgroup -n shop 2>/dev/null | grep -q '^shop *ratings ' &&
			weftctl get virtualservice -n shop 2>/dev/null | grep -q '^shop *backend ' && return 0
		sleep 0.1
	done
	return 1
}
check "config in effect (weftctl get)" in_effect
say "PeerAuthentication STRICT (mesh-wide), ServiceEntries + WorkloadEntries, a WorkloadGroup for ratings hosts,"
say "DestinationRule v1/v2, VirtualService (90/10 canary, retries, timeouts, faults), AuthorizationPolicy (deny crawler)"

bold "4. Identities: the mesh's trust bundle, one single-use bootstrap token per workload"
run weftctl ca bundle >"$WORK/root-cert.pem"
say "(weftctl token create -n shop --service-account SA --single-use, for each workload below)"

bold "5. Workloads: weft-proxy run [identity, address] -- shop ... (the app starts once its proxy is ready)"
NAMES=() ADDRS=()
workload() { # workload NAME ADDR SERVICE-ACCOUNT LABELS INBOUND(yes|no) APP-ARGS...
	local name=$1 addr=$2 sa=$3 labels=$4 inbound=$5; shift 5
	weftctl token create -n shop --service-account "$sa" --single-use --ttl 10m >"$WORK/tokens/$name" 2>"$WORK/logs/token.err" ||
		{ cat "$WORK/logs/token.err"; return 1; }
	local cmd=("$BIN/weft-proxy" run --ca-addr "$SECURE_ADDR" --root-cert "$WORK/root-cert.pem" --token-file "$WORK/tokens/$name"
		--namespace shop --service-account "$sa" --workload-name "$name" --labels "$labels" --ip "$addr" --bind-addr "$addr")
	[ "$inbound" = yes ] && cmd+=(--explicit-inbound)
	cmd+=(--drain-time 1s -- "$BIN/shop" "$@")
	if [ ${#NAMES[@]} -eq 0 ]; then # show the first one in full
		printf '$ weftctl token create -n shop --service-account %s --single-use --ttl 10m >%s\n' "$sa" "$WORK/tokens/$name"
		printf '$ %s\n' "${cmd[*]#"$PWD/"}"
	fi
	setsid "${cmd[@]}" >"$WORK/logs/$name.log" 2>&1 &
	PGIDS+=($!) NAMES+=("$name") ADDRS+=("$addr")
	printf '   %-11s %-12s spiffe://cluster.local/ns/shop/sa/%-9s shop %s\n' "$name" "$addr" "$sa" "$*"
}
wait_ready() { # wait_ready NAME ADDR PGID: the proxy's readiness on its own address (Istio's 15021)
	local i
	for i in $(seq 1 300); do
		curl -sf --max-time 1 "http://$2:15021/healthz/ready" >/dev/null 2>&1 && return 0
		group_alive "$3" || break
		sleep 0.1
	done
	echo "   $1 is not ready; its log ends with:"; tail -n 15 "$WORK/logs/$1.log" | sed 's/^/     /'
	return 1
}
workload backend-v1 "$NET.21" backend app=backend,version=v1 yes backend --listen 127.0.0.1:18081 --version v1
workload backend-v2 "$NET.22" backend app=backend,version=v2 yes backend --listen 127.0.0.1:18082 --version v2 --fail-every 3
workload frontend "$NET.20" frontend app=frontend,version=v1 yes frontend --listen 127.0.0.1:18080
say "(backend-v2, the canary, fails one request in three on purpose)"

bold "6. A host joins through the WorkloadGroup 'ratings': a bundle from weftctl, then weft-proxy --bundle"
bundle() { run weftctl vm bundle -n shop --workload-group ratings -o "$WORK/ratings-bundle" --address "$NET.30" 2>&1 | sed 's/^/   /'; }
check "weftctl vm bundle wrote the host's bundle (trust bundle, group-bound token, mesh settings)" bundle
cmd=("$BIN/weft-proxy" run --bundle "$WORK/ratings-bundle" --workload-name ratings-host --bind-addr "$NET.30" --explicit-inbound
	--drain-time 1s -- "$BIN/shop" ratings --listen 127.0.0.1:18090 --name ratings-host)
printf '$ %s\n' "${cmd[*]#"$PWD/"}"
setsid "${cmd[@]}" >"$WORK/logs/ratings-host.log" 2>&1 &
PGIDS+=($!) NAMES+=(ratings-host) ADDRS+=("$NET.30")

bold "7. Callers: loadgen sends steady traffic (20 req/s, some slow or faulty on purpose); crawler is denied"
for i in "${!NAMES[@]}"; do
	check "proxy ${NAMES[$i]} ready (http://${ADDRS[$i]}:15021/healthz/ready)" wait_ready "${NAMES[$i]}" "${ADDRS[$i]}" "${PGIDS[$i]}"
done
n=${#NAMES[@]}
workload loadgen "$NET.10" loadgen app=loadgen no loadgen --qps 20 --mix slow=4,abort=3,delay=3
LOADGEN_PG=$!
workload crawler "$NET.11" crawler app=crawler no loadgen --qps 2
for i in $(seq "$n" $((${#NAMES[@]} - 1))); do
	check "proxy ${NAMES[$i]} ready (http://${ADDRS[$i]}:15021/healthz/ready)" wait_ready "${NAMES[$i]}" "${ADDRS[$i]}" "${PGIDS[$i]}"
done

bold "8. What the mesh does, checked"
synced() { # every proxy has ACKed the latest push of every type (a push may be in flight: retry for 5s)
	local i out
	for i in $(seq 1 50); do
		out=$(weftctl proxy-status 2>/dev/null || true)
		[ "$(grep -c 'SYNCED *SYNCED *SYNCED *SYNCED' <<<"$out")" -eq "${#NAMES[@]}" ] && return 0
		sleep 0.1
	done
	sed 's/^/   /' <<<"$out"
	return 1
}
check "all ${#NAMES[@]} proxies SYNCED (weftctl proxy-status)" synced
joined() {
	local i out
	for i in $(seq 1 100); do
		out=$(weftctl get workloadentry -n shop 2>/dev/null || true)
		grep -q "ratings-127-0-77-30 .*$NET.30 .*healthy .*autoregistration" <<<"$out" && ! grep -q "ratings-127-0-77-30 .*unhealthy" <<<"$out" && break
		sleep 0.1
	done
	sed 's/^/   /' <<<"$out"
	grep -q "ratings-127-0-77-30 .*$NET.30 *healthy .*autoregistration" <<<"$out"
}
check "host joined: WorkloadEntry ratings-127-0-77-30 registered from the group, probe healthy" joined

# probe N [MIX]: N requests through loadgen's proxy (as the loadgen identity), summary line.
probe() { HTTP_PROXY="http://$NET.10:15080" "$BIN/shop" loadgen -n "$1" --qps 0 --concurrency 4 --timeout 5s | sed -n 1p || true; }
out=$(probe 50); say "50 requests: $out"
check "traffic flows: loadgen -> frontend -> backend, 50/50 answered 200" test "$(field "$out" status_200)" -eq 50
check "the joined host serves ratings (TCP through a CONNECT tunnel): $(field "$out" ratings_ok)/50" test "$(field "$out" ratings_ok)" -eq 50

plain=$(curl -s --max-time 3 -o /dev/null -w '%{http_code}' "http://$NET.20:18080/" 2>&1 || true)
check "STRICT mTLS: plaintext to frontend's address is refused (curl got '$plain')" test "$plain" = 000
mtls_hops() {
	local hop ok=0 m p
	for hop in "frontend $NET.20 istio_requests_total" "backend-v1 $NET.21 istio_requests_total" \
		"backend-v2 $NET.22 istio_requests_total" "ratings-host $NET.30 istio_tcp_connections_opened_total"; do
		set -- $hop
		m=$(metric "$2" "$3" reporter=destination connection_security_policy=mutual_tls)
		p=$(metric "$2" "$3" reporter=destination connection_security_policy=none)
		say "$1 inbound: mutual_tls=$m plaintext=$p"
		[ "$m" -gt 0 ] && [ "$p" -eq 0 ] || ok=1
	done
	return $ok
}
check "mTLS on every proxy-to-proxy hop (inbound connection_security_policy=\"mutual_tls\", never \"none\")" mtls_hops

out=$(probe 200); say "200 requests: $out"
v2=$(field "$out" backend_v2)
check "canary: about 10% answered by v2 (got $v2/200)" between "$v2" 5 45
v2fail=$(metric "$NET.22" istio_requests_total reporter=destination response_code=503)
check "retries: v2 failed $v2fail times so far, callers saw $(field "$out" ok)/200 succeed" \
	bash -c "[ '$v2fail' -gt 0 ] && [ '$(field "$out" ok)' -eq 200 ]"

timed() { # timed FILE CURL-ARGS...: "CODE SECONDS" of one request through loadgen's proxy
	local f=$1; shift
	curl -s --max-time 10 -o "$f" -w '%{http_code} %{time_total}' -x "http://$NET.10:15080" "$@" || true
}
read -r code secs <<<"$(timed "$WORK/slow.json" http://frontend.shop.svc.cluster.local:8080/slow)"
check "timeout: /slow (3s in the backend) answered $code after ${secs}s, route timeout 1s" \
	bash -c "[ '$code' = 504 ] && grep -q upstream_timeout '$WORK/slow.json' && awk 'BEGIN { exit !($secs >= 0.9 && $secs < 2.5) }'"
read -r code secs <<<"$(timed "$WORK/abort.json" -H 'x-shop-fault: abort' http://frontend.shop.svc.cluster.local:8080/)"
check "fault injection (abort): header x-shop-fault: abort answered $code by the mesh" \
	bash -c "[ '$code' = 500 ] && grep -q fault_filter_abort '$WORK/abort.json'"
read -r code secs <<<"$(timed "$WORK/delay.json" -H 'x-shop-fault: delay' http://frontend.shop.svc.cluster.local:8080/)"
check "fault injection (delay): x-shop-fault: delay answered $code after ${secs}s (500ms injected)" \
	bash -c "[ '$code' = 200 ] && awk 'BEGIN { exit !($secs >= 0.5) }'"
code=$(curl -s --max-time 5 -o "$WORK/denied.txt" -w '%{http_code}' -x "http://$NET.11:15080" http://frontend.shop.svc.cluster.local:8080/ || true)
check "AuthorizationPolicy: crawler (spiffe://cluster.local/ns/shop/sa/crawler) gets $code '$(head -c 40 "$WORK/denied.txt" 2>/dev/null | tr -d '\n')'" \
	bash -c "[ '$code' = 403 ] && grep -q 'RBAC: access denied' '$WORK/denied.txt'"

bold "Where to look next (in another terminal, while this runs)"
server=""; [ "$MON_ADDR" = 127.0.0.1:15014 ] || server=" --server $MON_ADDR"
cat <<EOF
   w="bin/weftctl$server --data-dir $WORK/data"
   \$w proxy-status               # every proxy and its xDS state: SYNCED / STALE / NACKED
   \$w get all -A                 # the config in effect, with its source
   \$w get workloadentry -n shop  # the joined host (source: autoregistration)
   \$w top                        # the live view below
   curl -s $NET.20:15000/stats/prometheus | grep ^istio_requests_total   # Istio metrics of frontend's proxy
   curl -s $NET.10:15000/config_dump | head -40      # Envoy-style config dump (loadgen's proxy)
   curl -s $NET.10:15000/clusters                    # its upstream endpoints and their health
   curl -s $MON_ADDR/metrics | grep ^pilot_xds       # weftd's own metrics
   curl -s -x $NET.10:15080 http://frontend.shop.svc.cluster.local:8080/   # call the shop as loadgen does
   logs: $WORK/logs/
EOF

# live N: N frames of the live view, each over the last $INTERVAL seconds.
live() { # (not through fg: its redirection would also apply to the traps run while waiting)
	"$BIN/weftctl" --server "$MON_ADDR" --data-dir "$WORK/data" top --interval "${INTERVAL}s" --count "$1" > >(tee -a "$WORK/live.txt") &
	FG_PID=$!
	wait "$FG_PID" || true
	FG_PID=""
}
if [ -n "$DURATION" ]; then
	frames=$(( LIVE / INTERVAL )); [ "$frames" -ge 2 ] || frames=2
	first=$(( frames / 2 )); second=$(( frames - first ))
else
	first=3 second=0
fi
bold "9. Live view: weftctl top, every ${INTERVAL}s (per route: requests, success, latency, errors, who answered, mTLS)"
live "$first"

bold "10. Shift the canary: 50/50 (weftctl apply, no restart)"
run weftctl apply -f examples/shop/canary-50.yaml
sleep 1
out=$(probe 200); say "200 requests: $out"
v2=$(field "$out" backend_v2)
check "canary shifted: about half answered by v2 (got $v2/200)" between "$v2" 60 140
: >"$WORK/live.txt"
if [ -z "$DURATION" ]; then
	echo "(live view until Ctrl-C)"
	fg "$BIN/weftctl" --server "$MON_ADDR" --data-dir "$WORK/data" top --interval "${INTERVAL}s"
	exit 130
fi
live "$second"
# ANSWERED BY names versions (destination_version): backend-v2 is "v2".
share=$(grep 'frontend -> backend.shop' "$WORK/live.txt" | tail -1 | sed -n 's/.* v2 \([0-9]*\)%.*/\1/p' || true)
check "the live view shows the shift: v2 (backend-v2) answered ${share:-0}% in the last frame" between "${share:-0}" 25 75

bold "Summary"
weftctl top --cumulative --count 1 | sed 's/^/   /' || true
echo
# Stop loadgen the gentle way: weft-proxy run forwards SIGTERM to the app, the
# app lets its requests in flight finish and prints its summary, then the proxy drains.
kill -TERM "$LOADGEN_PG" 2>/dev/null || true
for i in $(seq 1 150); do group_alive "$LOADGEN_PG" || break; sleep 0.1; done
loadgen=$(grep -E '^(total|normal|slow|abort|delay) requests=' "$WORK/logs/loadgen.log" || true)
sed 's/^/   loadgen /' <<<"$loadgen"
normal=$(grep '^normal ' <<<"$loadgen" || true)
check "no normal request failed during the whole run, canary shift included ($(field "$normal" ok)/$(field "$normal" requests))" \
	bash -c "[ '$(field "$normal" requests)' -gt 0 ] && [ '$(field "$normal" ok)' -eq '$(field "$normal" requests)' ]"
conns=$(metric "$NET.30" istio_tcp_connections_opened_total reporter=destination)
check "the joined host received traffic all along ($conns connections)" test "$conns" -gt 100
echo
if [ ${#FAILED[@]} -gt 0 ]; then
	for f in "$WORK"/logs/*.log; do # the work dir goes on exit: show how each log ends
		echo "--- $(basename "$f") (last lines)"; tail -n 8 "$f" | sed 's/^/   /'
	done
	echo
	echo "${#FAILED[@]} check(s) failed, $PASSED passed:"
	printf '   [FAIL] %s\n' "${FAILED[@]}"
	exit 1
fi
echo "all $PASSED checks passed"
