#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback:
#   direct (client -> fortio echo server), weft h1 engine, nginx, haproxy, caddy.
# Latency: fortio -qps 1000 -c 16 -uniform, 1 KiB POST echoed by the backend.
# Throughput: fortio -qps 0 -c 16 (1 KiB POST) and wrk -t1 -c16 (1 KiB POST via Lua).
# Load client pinned to CPU0; proxies and backend to CPU1; single worker each.
#
# Env knobs (for quick runs): BENCH_DURATION (latency run, s, default 15),
# BENCH_MAX_DURATION (throughput runs, s, default 10), BENCH_WARMUP (s, default 3),
# BENCH_TARGETS (default "direct weft nginx haproxy caddy"; "weft-plain" = weft
# with net.Conn I/O instead of raw socket I/O, for A/B), BENCH_PROFILE=1
# (write a CPU profile of the weft engine to results/h1bench.pprof),
# BENCH_INSTALL=0 (never install tools), BENCH_ROUNDS (default 1: interleaved
# rounds over all targets; each cell reports the best round, since load from
# other jobs on a shared machine only ever adds latency and CPU).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DUR="${BENCH_DURATION:-15}"
MAXDUR="${BENCH_MAX_DURATION:-10}"
WARM="${BENCH_WARMUP:-3}"
TARGETS="${BENCH_TARGETS:-direct weft nginx haproxy caddy}"
ROUNDS="${BENCH_ROUNDS:-1}"
RESULTS="$HERE/results"
WORK="$(mktemp -d /tmp/weft-bench.XXXXXX)"
CLIENT_CPU=0
SERVER_CPU=1
BACKEND_PORT=18080
declare -A PORT=([direct]=$BACKEND_PORT [weft]=18081 [nginx]=18082 [haproxy]=18083 [caddy]=18084 [weft-plain]=18085)
PIDS=()

cleanup() {
	local rc=$?
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	sleep 0.3
	for pid in "${PIDS[@]}"; do
		kill -9 "$pid" 2>/dev/null || true
	done
	rm -rf "$WORK"
	exit $rc
}
trap cleanup EXIT INT TERM

log() { echo "[bench] $*" >&2; }

# --- tools -------------------------------------------------------------------
GOBIN_DIR="$(go env GOPATH)/bin"
export PATH="$PATH:$GOBIN_DIR"
need_apt=()
for t in nginx haproxy caddy wrk taskset python3; do
	command -v "$t" >/dev/null 2>&1 || need_apt+=("$t")
done
if ((${#need_apt[@]})); then
	[[ "${BENCH_INSTALL:-1}" == 1 ]] || { log "missing: ${need_apt[*]}"; exit 1; }
	pkgs=()
	for t in "${need_apt[@]}"; do
		case $t in taskset) pkgs+=(util-linux) ;; *) pkgs+=("$t") ;; esac
	done
	log "installing ${pkgs[*]}"
	apt-get update -qq && apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
if ! command -v fortio >/dev/null 2>&1; then
	[[ "${BENCH_INSTALL:-1}" == 1 ]] || { log "missing fortio"; exit 1; }
	log "installing fortio v1.68.2"
	(cd /tmp && go install fortio.org/fortio@v1.68.2)
fi
# nginx/haproxy/caddy packages start system services on install; the
# benchmark uses its own ports and configs, so those are left alone.

log "building h1bench"
(cd "$ROOT" && go build -o "$WORK/h1bench" ./bench/proxy/cmd/h1bench)

# --- servers -----------------------------------------------------------------
# Arrays, not functions: a backgrounded function runs in a subshell whose
# pid ($!) is not the server's, so it could be neither measured nor killed.
PIN=(taskset -c "$SERVER_CPU")
LOAD=(timeout "$((DUR + MAXDUR + 60))" taskset -c "$CLIENT_CPU") # every load run is time-bounded

wait_port() {
	local port=$1
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "port $port did not open"
	return 1
}

start_backend() {
	"${PIN[@]}" fortio server -http-port "127.0.0.1:$BACKEND_PORT" -grpc-port disabled \
		-redirect-port disabled -tcp-port disabled -udp-port disabled -echo-debug-path "" -loglevel Warning >"$WORK/backend.log" 2>&1 &
	PIDS+=($!)
	wait_port $BACKEND_PORT
}

# start_proxy NAME -> sets SRV_PID (the process whose CPU/RSS we measure)
start_proxy() {
	local name=$1 port=${PORT[$1]}
	case $name in
	direct) SRV_PID="" ;;
	weft | weft-plain)
		local prof=()
		[[ $name == weft-plain ]] && prof+=(-plain-io)
		[[ "${BENCH_PROFILE:-0}" == 1 ]] && prof+=(-cpuprofile "$RESULTS/$name.pprof")
		"${PIN[@]}" "$WORK/h1bench" -listen "127.0.0.1:$port" -upstream "127.0.0.1:$BACKEND_PORT" "${prof[@]}" \
			>"$WORK/weft.log" 2>&1 &
		SRV_PID=$!
		;;
	nginx)
		mkdir -p "$WORK/nginx/logs"
		cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fastcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:$port;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
		"${PIN[@]}" nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" >"$WORK/nginx/stdout.log" 2>&1 &
		PIDS+=($!)
		wait_port "$port"
		# Measure the single worker (the master is idle).
		SRV_PID=$(pgrep -P "${PIDS[-1]}" | head -n1)
		;;
	haproxy)
		cat >"$WORK/haproxy.cfg" <<EOF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  option http-keep-alive
  http-reuse always
frontend fe
  bind 127.0.0.1:$port
  default_backend be
backend be
  server s1 127.0.0.1:$BACKEND_PORT
EOF
		"${PIN[@]}" haproxy -db -f "$WORK/haproxy.cfg" >"$WORK/haproxy.log" 2>&1 &
		SRV_PID=$!
		;;
	caddy)
		cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$port {
	reverse_proxy 127.0.0.1:$BACKEND_PORT
}
EOF
		XDG_DATA_HOME="$WORK/caddy" XDG_CONFIG_HOME="$WORK/caddy" HOME="$WORK" \
			"${PIN[@]}" caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
		SRV_PID=$!
		;;
	esac
	if [[ $name != nginx && -n $SRV_PID ]]; then PIDS+=("$SRV_PID"); fi
	wait_port "$port"
}

stop_proxy() {
	local name=$1
	case $name in
	direct) return ;;
	nginx) kill "${PIDS[-1]}" 2>/dev/null || true; wait "${PIDS[-1]}" 2>/dev/null || true ;;
	*) kill "$SRV_PID" 2>/dev/null || true; wait "$SRV_PID" 2>/dev/null || true ;;
	esac
}

cpu_ticks() { # utime+stime of a pid, in clock ticks
	[[ -n "${1:-}" ]] || { echo 0; return; }
	awk '{print $14+$15}' "/proc/$1/stat"
}
hwm_kb() {
	[[ -n "${1:-}" ]] || { echo 0; return; }
	awk '/VmHWM/{print $2}' "/proc/$1/status"
}


cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("a", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

for p in "${PORT[@]}"; do
	if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
		log "port $p is already in use; stop whatever listens there first"
		exit 1
	fi
done

# --- run -----------------------------------------------------------------------
mkdir -p "$RESULTS"
start_backend
TSV="$WORK/results.tsv"
: >"$TSV"
CLK_TCK=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
	for name in $TARGETS; do
		port=${PORT[$name]}
		url="http://127.0.0.1:$port/echo"
		log "== round $round: $name (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
		start_proxy "$name"
		"${LOAD[@]}" fortio load -quiet -qps 1000 -c 16 -t "${WARM}s" -uniform -payload-size 1024 "$url" >/dev/null 2>&1
		t0=$(cpu_ticks "$SRV_PID")
		"${LOAD[@]}" fortio load -quiet -qps 1000 -c 16 -t "${DUR}s" -uniform -payload-size 1024 \
			-r 0.00001 -p "50,90,99,99.9" -json "$WORK/$name-$round-lat.json" "$url" >/dev/null 2>&1
		t1=$(cpu_ticks "$SRV_PID")
		"${LOAD[@]}" fortio load -quiet -qps 0 -c 16 -t "${MAXDUR}s" -payload-size 1024 -json "$WORK/$name-$round-max.json" "$url" >/dev/null 2>&1
		"${LOAD[@]}" wrk -t1 -c16 -d"${MAXDUR}s" -s "$WORK/post.lua" "$url" >"$WORK/$name-$round-wrk.txt" 2>&1
		hwm=$(hwm_kb "$SRV_PID")
		printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$((t1 - t0))" "$hwm" "$WORK/$name-$round-lat.json" "$WORK/$name-$round-max.json" "$WORK/$name-$round-wrk.txt" >>"$TSV"
		stop_proxy "$name"
	done
done

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$TSV" "$CLK_TCK" "$DUR" "$MAXDUR" "$ROUNDS" "$LOAD_BEFORE" "$LOAD_AFTER" >"$RESULTS/latest.md" <<'EOF'
import json, re, sys, datetime, platform
tsv, tck, dur, maxdur, rounds, lb, la = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6], sys.argv[7]
rows = [l.rstrip("\n").split("\t") for l in open(tsv)]
def pct(j, p):
    for e in j["DurationHistogram"]["Percentiles"]:
        if abs(e["Percentile"] - p) < 1e-9:
            return e["Value"] * 1e6
    return float("nan")
data = []
for name, ticks, hwm, lat, mx, wrk in rows:
    L, M = json.load(open(lat)), json.load(open(mx))
    w = open(wrk).read()
    m = re.search(r"Requests/sec:\s+([\d.]+)", w)
    ok = L["RetCodes"].get("200", 0)
    errs = sum(v for k, v in L["RetCodes"].items() if k != "200")
    werr = re.search(r"Non-2xx or 3xx responses: (\d+)", w)
    cpu_s = int(ticks) / tck
    data.append(dict(name=name, p50=pct(L, 50), p90=pct(L, 90), p99=pct(L, 99), p999=pct(L, 99.9),
        qps=L["ActualQPS"], n=L["DurationHistogram"]["Count"], errs=errs,
        cpu=cpu_s / L["ActualDuration"] * 1e9 * 100 if name != "direct" else None,
        cpu_us=cpu_s * 1e6 / max(ok, 1) if name != "direct" else None,
        rss=int(hwm) / 1024 if name != "direct" else None,
        fmax=M["ActualQPS"], fmax_err=sum(v for k, v in M["RetCodes"].items() if k != "200"),
        wrk=float(m.group(1)) if m else float("nan"), wrk_err=int(werr.group(1)) if werr else 0))
# Best round per target: other jobs on the machine only add latency and CPU.
best = {}
for d in data:
    b = best.get(d["name"])
    if b is None:
        best[d["name"]] = dict(d)
        continue
    for k in ("p50", "p90", "p99", "p999", "cpu", "cpu_us"):
        if d[k] is not None:
            b[k] = min(b[k], d[k])
    for k in ("fmax", "wrk", "rss"):
        if d[k] is not None:
            b[k] = max(b[k], d[k])
    for k in ("errs", "fmax_err", "wrk_err"):
        b[k] += d[k]
order = []
for d in data:
    if d["name"] not in order:
        order.append(d["name"])
data = [best[n] for n in order]
base = next((d for d in data if d["name"] == "direct"), None)
f = lambda v, fmt="%.0f": "—" if v is None else fmt % v
print("## HTTP/1.1 proxy benchmark (%s UTC)\n" % datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M"))
print("Loopback, 1 KiB POST echoed by `fortio server`, 16 connections. Latency: `fortio load -qps 1000 -c 16 -t %ss -uniform -payload-size 1024 -r 0.00001` after a warm-up."
      " Max: `fortio load -qps 0 -c 16 -t %ss -payload-size 1024` (POST) and `wrk -t1 -c16 -d%ss` with a 1 KiB POST Lua script."
      " Client on CPU0, proxy + backend on CPU1, one worker/thread (weft: GOMAXPROCS=1). CPU from /proc/PID/stat during the 1k-qps run; RSS = VmHWM."
      " Rounds: %d (each cell: best round). Load average before/after: %s / %s.\n" % (dur, maxdur, maxdur, rounds, lb, la))
print("| path | p50 us | p90 us | p99 us | p99.9 us | added p99 us | CPU % @1k qps | CPU us/req | peak RSS MiB | fortio max req/s | wrk max req/s | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in data:
    added = d["p99"] - base["p99"] if base and d is not base else None
    print("| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %s | %.0f | %.0f | %d |" % (
        d["name"], d["p50"], d["p90"], d["p99"], d["p999"], f(added), f(d["cpu"], "%.1f"), f(d["cpu_us"], "%.1f"),
        f(d["rss"], "%.1f"), d["fmax"], d["wrk"], d["errs"] + d["fmax_err"] + d["wrk_err"]))
EOF
cat "$RESULTS/latest.md"
