#!/usr/bin/env bash
# Side-by-side HTTP/1.1 proxy benchmark on loopback:
#   direct (client -> fortio echo server), weft h1 engine, nginx, haproxy, caddy.
# Latency: fortio -qps 1000 -c 16 -uniform, 1 KiB POST echoed by the backend.
# Throughput: fortio -qps 0 -c 16 (1 KiB POST) and wrk -t1 -c16 (1 KiB POST via Lua).
# Load client pinned to CPU0; proxies and backend to CPU1; single worker each.
#
# Env knobs (for quick runs): BENCH_DURATION (latency run, s, default 15),
# BENCH_MAX_DURATION (throughput runs, s, default 10), BENCH_WARMUP (s, default 3),
# BENCH_TARGETS (default: every target below except weft-raw; "weft-raw" = weft
# with raw non-blocking socket I/O (h1.Config.RawIO), for A/B), BENCH_PROFILE=1
# (write CPU profiles of the weft engine to results/<target>.pprof),
# BENCH_INSTALL=0 (never install tools), BENCH_ROUNDS (default 1: interleaved
# rounds over all targets; each cell reports the best round, since load from
# other jobs on a shared machine only ever adds latency and CPU).
#
# Targets:
#   direct         client -> backend
#   weft           the h1 engine alone (bench/proxy/cmd/h1bench, static router)
#   weft-proxy     the real weft-proxy binary, config from weftd over xDS (explicit
#                  HTTP proxy, routed by Host through RDS, telemetry on), one hop
#   weft-mtls      two weft-proxies (client sidecar -> server sidecar) with mesh
#                  mTLS (STRICT PeerAuthentication, SPIFFE certificates from weftd)
#   weft-mtls-rot  weft-mtls with 20 s certificates (each proxy rotates every ~10 s)
#   nginx-mtls     two nginx (one worker each) with mutual TLS between them
#   nginx haproxy caddy weft-raw: one-hop references (see README.md)
# Two-hop targets report CPU and RSS summed over both proxies.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DUR="${BENCH_DURATION:-15}"
MAXDUR="${BENCH_MAX_DURATION:-10}"
WARM="${BENCH_WARMUP:-3}"
TARGETS="${BENCH_TARGETS:-direct weft-proxy nginx haproxy caddy weft weft-mtls nginx-mtls weft-mtls-rot}"
ROUNDS="${BENCH_ROUNDS:-1}"
RESULTS="$HERE/results"
WORK="$(mktemp -d /tmp/weft-bench.XXXXXX)"
CLIENT_CPU=0
SERVER_CPU=1
BACKEND_PORT=18080
declare -A PORT=([direct]=$BACKEND_PORT [weft]=18081 [nginx]=18082 [haproxy]=18083 [caddy]=18084 [weft-raw]=18085
	[weft-proxy]=18086 [weft-mtls]=18086 [weft-mtls-rot]=18086 [nginx-mtls]=18087)
WEFT_ADDR_A=127.0.0.3 # client-side sidecar: every port of it binds here
WEFT_ADDR_B=127.0.0.2 # server-side sidecar: explicit inbound on $BACKEND_PORT
# Address the load client talks to, and the Host header weft-proxy routes by (RDS).
declare -A BIND=([weft-proxy]=$WEFT_ADDR_A [weft-mtls]=$WEFT_ADDR_A [weft-mtls-rot]=$WEFT_ADDR_A)
declare -A HOSTHDR=([weft-proxy]=echo-direct.bench.svc.cluster.local:$BACKEND_PORT
	[weft-mtls]=echo-mesh.bench.svc.cluster.local:$BACKEND_PORT [weft-mtls-rot]=echo-mesh.bench.svc.cluster.local:$BACKEND_PORT)
# Ports of the weftd / sidecar / nginx-pair plumbing (checked free too).
AUX_PORTS=(18088 18090 18091 18092 18093 18094 18095)
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
for t in nginx haproxy caddy wrk taskset python3 openssl curl; do
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

log "building h1bench, weftd, weftctl, weft-proxy"
(cd "$ROOT" && go build -o "$WORK/h1bench" ./bench/proxy/cmd/h1bench &&
	go build -ldflags "-s -w" -o "$WORK/" ./cmd/weftd ./cmd/weftctl ./cmd/weft-proxy) # flags as make build

# --- servers -----------------------------------------------------------------
# Arrays, not functions: a backgrounded function runs in a subshell whose
# pid ($!) is not the server's, so it could be neither measured nor killed.
PIN=(taskset -c "$SERVER_CPU")
LOAD=(timeout "$((DUR + MAXDUR + 60))" taskset -c "$CLIENT_CPU") # every load run is time-bounded

wait_port() {
	local port=$1 host=${2:-127.0.0.1}
	for _ in $(seq 1 100); do
		if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	log "port $host:$port did not open"
	return 1
}

start_backend() {
	"${PIN[@]}" fortio server -http-port "127.0.0.1:$BACKEND_PORT" -grpc-port disabled \
		-redirect-port disabled -tcp-port disabled -udp-port disabled -echo-debug-path "" -loglevel Warning >"$WORK/backend.log" 2>&1 &
	PIDS+=($!)
	wait_port $BACKEND_PORT
}

# start_proxy NAME -> sets SRV_PIDS (the processes whose CPU and RSS are
# measured) and STOP_PIDS (what stop_proxy kills).
start_proxy() {
	local name=$1 port=${PORT[$1]}
	SRV_PID=""
	SRV_PIDS=()
	STOP_PIDS=()
	case $name in
	direct) ;;
	weft-proxy)
		start_weft_sidecar A "$WEFT_ADDR_A" client 24h
		;;
	weft-mtls | weft-mtls-rot)
		local ttl=24h
		[[ $name == weft-mtls-rot ]] && ttl=20s
		start_weft_sidecar B "$WEFT_ADDR_B" echo "$ttl"
		start_weft_sidecar A "$WEFT_ADDR_A" client "$ttl"
		;;
	nginx-mtls)
		start_nginx_pair
		;;
	weft | weft-raw)
		local prof=()
		[[ $name == weft-raw ]] && prof+=(-raw-io)
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
		STOP_PIDS+=($!)
		wait_port "$port"
		# Measure the single worker (the master is idle).
		SRV_PIDS+=("$(pgrep -P "${PIDS[-1]}" | head -n1)")
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
	if [[ -n $SRV_PID ]]; then
		PIDS+=("$SRV_PID")
		SRV_PIDS+=("$SRV_PID")
		STOP_PIDS+=("$SRV_PID")
	fi
	wait_port "$port" "${BIND[$name]:-127.0.0.1}"
}

stop_proxy() {
	local pid
	for pid in "${STOP_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${STOP_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}

cpu_ticks() { # utime+stime summed over pids, in clock ticks
	local sum=0 pid
	for pid in "$@"; do
		sum=$((sum + $(awk '{print $14+$15}' "/proc/$pid/stat")))
	done
	echo "$sum"
}
anon_kb() { # anonymous (private, not file-backed) RSS summed over pids, now
	local sum=0 pid
	for pid in "$@"; do
		sum=$((sum + $(awk '/RssAnon/{print $2}' "/proc/$pid/status")))
	done
	echo "$sum"
}
hwm_kb() { # peak RSS summed over pids
	local sum=0 pid
	for pid in "$@"; do
		sum=$((sum + $(awk '/VmHWM/{print $2}' "/proc/$pid/status")))
	done
	echo "$sum"
}

# --- weftd and weft-proxy sidecars (real binaries, config over xDS) -------------
# weftd runs on CPU0 with the load client: it is idle during the measured runs.
WEFTD_MON=127.0.0.1:18092
weftctl() { "$WORK/weftctl" --server "$WEFTD_MON" --data-dir "$WORK/cp/data" "$@"; }
start_weftd() {
	mkdir -p "$WORK/cp/config"
	cp "$HERE/mesh.yaml" "$WORK/cp/config/"
	taskset -c "$CLIENT_CPU" "$WORK/weftd" --data-dir "$WORK/cp/data" --config-dir "$WORK/cp/config" \
		--insecure-xds-addr 127.0.0.1:18090 --secure-addr 127.0.0.1:18091 --monitoring-addr "$WEFTD_MON" \
		--log-level warn >"$WORK/weftd.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 1 100); do
		curl -fsS "http://$WEFTD_MON/ready" >/dev/null 2>&1 && break
		sleep 0.1
	done
	weftctl ca bundle >"$WORK/cp/root-cert.pem"
}

# start_weft_sidecar A|B ADDR SERVICE-ACCOUNT CERT-TTL: a weft-proxy with its
# own SPIFFE identity, every port on ADDR; B serves the backend's port inbound.
start_weft_sidecar() {
	local which=$1 addr=$2 sa=$3 ttl=$4 extra=() admin
	weftctl token create -n bench --service-account "$sa" --ttl 1h >"$WORK/token-$which" 2>/dev/null
	if [[ $which == B ]]; then
		admin=$addr:18094
		extra+=(--explicit-inbound --workload-name echo-mesh-1 --labels app=echo-mesh --http-proxy-port 18093)
	else
		admin=$addr:18095
		extra+=(--workload-name client-1 --http-proxy-port "${PORT[weft-proxy]}")
	fi
	env GOMAXPROCS=1 "${PIN[@]}" "$WORK/weft-proxy" --namespace bench --service-account "$sa" \
		--ip "$addr" --bind-addr "$addr" --admin-addr "$admin" --health-port 0 \
		--ca-addr 127.0.0.1:18091 --root-cert "$WORK/cp/root-cert.pem" --token-file "$WORK/token-$which" \
		--cert-ttl "$ttl" --log-level warn "${extra[@]}" >"$WORK/weft-proxy-$which.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	SRV_PIDS+=("$pid")
	STOP_PIDS+=("$pid")
	for _ in $(seq 1 150); do
		curl -fsS "http://$admin/ready" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	log "weft-proxy $which did not become ready:"
	tail -n 20 "$WORK/weft-proxy-$which.log" >&2
	return 1
}

# --- nginx pair with mutual TLS --------------------------------------------------
make_pki() {
	local d="$WORK/pki"
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/O=bench/CN=bench root" \
		-keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
	for n in client server; do
		openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=bench/CN=$n" \
			-keyout "$d/$n.key" -out "$d/$n.csr" 2>/dev/null
		printf 'subjectAltName=DNS:%s.bench\nextendedKeyUsage=serverAuth,clientAuth\n' "$n" >"$d/$n.ext"
		openssl x509 -req -in "$d/$n.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
			-extfile "$d/$n.ext" -out "$d/$n.pem" 2>/dev/null
	done
}

nginx_conf() { # nginx_conf DIR HTTP-BLOCK-BODY
	mkdir -p "$1/logs"
	cat >"$1/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process on;
pid $1/nginx.pid;
error_log $1/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  fastcgi_temp_path $1/fastcgi;
  uwsgi_temp_path $1/uwsgi;
  scgi_temp_path $1/scgi;
$2
}
NGINX
}

start_nginx_pair() {
	local d="$WORK/pki" w
	[[ -f $d/ca.pem ]] || make_pki
	# B: terminates mutual TLS (client certificate required), keep-alive to the backend.
	nginx_conf "$WORK/nginx-b" "
  upstream backend { server 127.0.0.1:$BACKEND_PORT; keepalive 64; }
  server {
    listen 127.0.0.1:18088 ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $d/server.pem;
    ssl_certificate_key $d/server.key;
    ssl_client_certificate $d/ca.pem;
    ssl_verify_client on;
    keepalive_requests 100000;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
    }
  }"
	# A: plaintext from the client, mutual TLS to B (keep-alive, session reuse, B's name verified).
	nginx_conf "$WORK/nginx-a" "
  upstream peer { server 127.0.0.1:18088; keepalive 64; }
  server {
    listen 127.0.0.1:${PORT[nginx-mtls]};
    location / {
      proxy_pass https://peer;
      proxy_http_version 1.1;
      proxy_set_header Connection \"\";
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate $d/client.pem;
      proxy_ssl_certificate_key $d/client.key;
      proxy_ssl_trusted_certificate $d/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name server.bench;
      proxy_ssl_session_reuse on;
    }
  }"
	for w in b a; do
		"${PIN[@]}" nginx -p "$WORK/nginx-$w" -c "$WORK/nginx-$w/nginx.conf" >"$WORK/nginx-$w/stdout.log" 2>&1 &
		PIDS+=($!)
		STOP_PIDS+=($!)
		if [[ $w == b ]]; then wait_port 18088; else wait_port "${PORT[nginx-mtls]}"; fi
		SRV_PIDS+=("$(pgrep -P "${PIDS[-1]}" | head -n1)")
	done
}


cat >"$WORK/post.lua" <<'EOF'
wrk.method = "POST"
wrk.body = string.rep("a", 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
EOF

for p in "${PORT[@]}" "${AUX_PORTS[@]}"; do
	for h in 127.0.0.1 $WEFT_ADDR_A $WEFT_ADDR_B; do
		if (exec 3<>"/dev/tcp/$h/$p") 2>/dev/null; then
			log "port $h:$p is already in use; stop whatever listens there first"
			exit 1
		fi
	done
done

# --- run -----------------------------------------------------------------------
mkdir -p "$RESULTS"
start_backend
case " $TARGETS " in *" weft-proxy "* | *" weft-mtls"*) start_weftd ;; esac
TSV="$WORK/results.tsv"
: >"$TSV"
CLK_TCK=$(getconf CLK_TCK)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq 1 "$ROUNDS"); do
	for name in $TARGETS; do
		port=${PORT[$name]}
		url="http://${BIND[$name]:-127.0.0.1}:$port/echo"
		hdr=()
		[[ -n ${HOSTHDR[$name]:-} ]] && hdr=(-H "Host: ${HOSTHDR[$name]}")
		log "== round $round: $name (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
		start_proxy "$name"
		"${LOAD[@]}" fortio load -quiet -qps 1000 -c 16 -t "${WARM}s" -uniform -payload-size 1024 "${hdr[@]}" "$url" >/dev/null 2>&1
		t0=$(cpu_ticks "${SRV_PIDS[@]}")
		"${LOAD[@]}" fortio load -quiet -qps 1000 -c 16 -t "${DUR}s" -uniform -payload-size 1024 "${hdr[@]}" \
			-r 0.00001 -p "50,90,99,99.9" -json "$WORK/$name-$round-lat.json" "$url" >/dev/null 2>&1
		t1=$(cpu_ticks "${SRV_PIDS[@]}")
		"${LOAD[@]}" fortio load -quiet -qps 0 -c 16 -t "${MAXDUR}s" -payload-size 1024 "${hdr[@]}" -json "$WORK/$name-$round-max.json" "$url" >/dev/null 2>&1
		"${LOAD[@]}" wrk -t1 -c16 -d"${MAXDUR}s" -s "$WORK/post.lua" "${hdr[@]}" "$url" >"$WORK/$name-$round-wrk.txt" 2>&1
		hwm=$(hwm_kb "${SRV_PIDS[@]}")
		anon=$(anon_kb "${SRV_PIDS[@]}")
		printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$((t1 - t0))" "$hwm" "$anon" "$WORK/$name-$round-lat.json" "$WORK/$name-$round-max.json" "$WORK/$name-$round-wrk.txt" >>"$TSV"
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
for name, ticks, hwm, anon, lat, mx, wrk in rows:
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
        anon=int(anon) / 1024 if name != "direct" else None,
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
    for k in ("fmax", "wrk", "rss", "anon"):
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
      " Client on CPU0, proxy + backend on CPU1, one worker/thread (weft: GOMAXPROCS=1). CPU from /proc/PID/stat during the 1k-qps run; RSS = VmHWM (file-backed binary pages included; shared between processes of one binary), anon RSS = RssAnon at the end of the run (the process's own memory)."
      " Rounds: %d (each cell: best round). Load average before/after: %s / %s.\n" % (dur, maxdur, maxdur, rounds, lb, la))
print("| path | p50 us | p90 us | p99 us | p99.9 us | added p99 us | CPU % @1k qps | CPU us/req | peak RSS MiB | anon RSS MiB | fortio max req/s | wrk max req/s | errors |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for d in data:
    added = d["p99"] - base["p99"] if base and d is not base else None
    print("| %s | %.0f | %.0f | %.0f | %.0f | %s | %s | %s | %s | %s | %.0f | %.0f | %d |" % (
        d["name"], d["p50"], d["p90"], d["p99"], d["p999"], f(added), f(d["cpu"], "%.1f"), f(d["cpu_us"], "%.1f"),
        f(d["rss"], "%.1f"), f(d["anon"], "%.1f"), d["fmax"], d["wrk"], d["errs"] + d["fmax_err"] + d["wrk_err"]))
EOF
cat "$RESULTS/latest.md"
