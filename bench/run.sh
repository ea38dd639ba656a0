#!/usr/bin/env bash
# All benchmarks in one run, on this machine, each reported as a ratio.
# usage: bench/run.sh            (writes bench/out/results.md and prints it)
#        VTPY_DIR=/path/to/vt-py bench/run.sh   (adds the official Python client's row: a checkout
#        of github.com/VirusTotal/vt-py, run with /usr/bin/python3 (aiohttp); never committed)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh test
missing=()
for p in nginx-light wrk valgrind redis-server; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null && cmake --build build -j2 >/dev/null
out=bench/out; mkdir -p "$out"
work=$(mktemp -d)
chmod 755 "$work"   # nginx workers run as an unprivileged user
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }

# ---- a fast local server: nginx serving a real sample body as the API would
sample=spec/fake/samples/v3/file_msword_001015aa.json
hash=001015aafcae8a6942366cbb0e7d39c0738752a7800c41ea1c655d47b0a4d04c
mkdir -p "$work/www" "$work/nginx"
cp "$sample" "$work/www/file.json"
port=$(free_port)
cat > "$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  keepalive_timeout 60;
  default_type application/json;
  # every file id answers with the sample's body: the look-ups below ask for distinct ids (one
  # client sends identical look-ups in flight once)
  server { listen 127.0.0.1:$port; root $work/www; location /api/v3/files/ { try_files /file.json =404; } }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
sleep 0.5
url="http://127.0.0.1:$port/api/v3/files/$hash"
curl -sf -o /dev/null "$url"
conns=8
n=2000

# ---- throughput: c:batch of 2000 look-ups vs wrk, same connections; and vs the official Python
# client (vt-py's get_object_async, as many in flight), best of three runs each, taken in turns
wrk_rps=$(wrk -t1 -c$conns -d5s -H "x-apikey: bench-key" "$url" | awk '/Requests\/sec/ {print $2}')
vt_rps=0 py_rps=0
for _ in 1 2 3; do
  read -r _ batch_s _ < <(lua5.4 bench/batch.lua "http://127.0.0.1:$port" "$hash" $n $conns)
  vt_rps=$(calc "max($vt_rps, $n / $batch_s)")
  if [ -n "${VTPY_DIR:-}" ]; then
    read -r _ py_s < <(/usr/bin/python3 bench/vtpy_batch.py "$VTPY_DIR" "http://127.0.0.1:$port" "$hash" $n $conns)
    py_rps=$(calc "max($py_rps, $n / $py_s)")
  fi
done
tp_ratio=$(calc "round($vt_rps / $wrk_rps, 3)")
vtpy_row=""
if [ -n "${VTPY_DIR:-}" ]; then
  vtpy_version=$(cd "$VTPY_DIR" && git describe --tags --always 2>/dev/null || echo checkout)
  vtpy_row="| throughput, the same $n look-ups | $(calc "round($vt_rps)") look-ups/s (\`c:batch\`) | $(calc "round($py_rps)") look-ups/s (vt-py $vtpy_version, \`get_object_async\`, $conns in flight) | $(calc "round($vt_rps / $py_rps, 2)") |"$'\n' # with its newline: no blank row without it
fi

# ---- long lists: jobs at once in a batch of 10,000; peak memory of c:each over 100,000 vs 1,000
read -r big_n big_most _ < <(lua5.4 bench/batch_jobs.lua "http://127.0.0.1:$port" "$hash" 10000 $conns)
read -r _ each_small_kb _ _ < <(lua5.4 bench/each.lua "http://127.0.0.1:$port" "$hash" 1000 $conns)
read -r each_n each_big_kb each_list_kb _ < <(lua5.4 bench/each.lua "http://127.0.0.1:$port" "$hash" 100000 $conns)

# ---- CPU per look-up: callgrind instructions, vt vs plain libcurl + lua-cjson
gcc -O2 -o "$work/plain_fetch" bench/plain_fetch.c $(pkg-config --cflags --libs libcurl lua5.4)
instr() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | awk '/Collected/ {print $4}'; }
vt_a=$(instr lua5.4 bench/lookups.lua "http://127.0.0.1:$port" "$hash" 20)
vt_b=$(instr lua5.4 bench/lookups.lua "http://127.0.0.1:$port" "$hash" 120)
pl_a=$(instr "$work/plain_fetch" "$url" 20)
pl_b=$(instr "$work/plain_fetch" "$url" 120)
vt_per=$(calc "($vt_b - $vt_a) // 100")
pl_per=$(calc "($pl_b - $pl_a) // 100")
cpu_ratio=$(calc "round($vt_per / $pl_per, 3)")

# ---- peak resident memory of a 200 MB upload and download (fake VirusTotal)
coproc FAKE { exec python3 spec/fake/fakevt.py --key bench-key --analysis-steps 0; }
read -r _ fport _ fpid <&"${FAKE[0]}"
pids+=("$fpid")
furl="http://127.0.0.1:$fport"
truncate -s 200M "$work/big.bin"
head -c 1M /dev/urandom >> "$work/big.bin"
big_hash=$(curl -sf --data-binary @"$work/big.bin" "$furl/_fake/files" | python3 -c 'import json,sys; print(json.load(sys.stdin)["sha256"])')
big_mb=$(calc "round($(stat -c %s "$work/big.bin") / 1048576, 1)")
rss() { # KiB of VmHWM after the Lua snippet ran
  lua5.4 -e "package.cpath='build/?.so;'..package.cpath
    local c = require('vt').client{apikey='bench-key', base_url='$furl', quota_state=false, timeout=300}
    assert($1)
    print(io.open('/proc/self/status'):read('a'):match('VmHWM:%s*(%d+)'))"
}
up_kb=$(rss "c:scan_file('$work/big.bin')")
down_kb=$(rss "c:download('$big_hash', '$work/down.bin', {max_bytes = 300e6})")
base_kb=$(rss "c:file('$big_hash')")

# ---- peak resident memory of following a feed (its own fake; exits 1 when over 32 MB)
feed_row=$(lua5.4 bench/feed.lua) || true

# ---- start-up: require "vt" and creating a client
runs=40
t0=$(now); for _ in $(seq $runs); do lua5.4 -e '' ; done; t1=$(now)
for _ in $(seq $runs); do lua5.4 -e 'package.cpath="build/?.so;"..package.cpath require "vt"'; done; t2=$(now)
bare_ms=$(calc "round(($t1 - $t0) * 1000 / $runs, 2)")
req_ms=$(calc "round(($t2 - $t1) * 1000 / $runs, 2)")
req_ratio=$(calc "round($req_ms / $bare_ms, 2)")
read -r mem_us file_us < <(lua5.4 -e "package.cpath='build/?.so;'..package.cpath
  local vt = require 'vt'
  local function per(opts) local t = os.clock() for _ = 1, 2000 do vt.client(opts):close() end return (os.clock() - t) / 2000 * 1e6 end
  print(string.format('%.1f %.1f', per{apikey='k', quota_state=false}, per{apikey='k', quota_state='$work/q.state'}))")

# ---- the cache: a fleet of 8 workers, 1000 alerts over a pool of 300 indicators (Zipf), one
# SQLite file or one Redis for all; what a cache hit costs against decoding the same body
read -r _ fl_entities fl_distinct sq_req sq_hits sq_coal sq_s < <(lua5.4 bench/fleet.lua sqlite 8 1000 300)
read -r _ _ _ rd_req rd_hits rd_coal rd_s < <(lua5.4 bench/fleet.lua redis 8 1000 300)
read -r dec_us sqhit_us rdhit_us rdhit_cpu_us < <(lua5.4 bench/cache_hit.lua 2000)

cat > "$out/results.md" <<MD
Measured by \`bench/run.sh\` on $(nproc) cores ($(uname -m)), $(date -u +%Y-%m-%d):

| what | vt | reference | ratio |
|---|---|---|---|
| throughput, $n look-ups of a $(stat -c %s "$sample")-byte file object, $conns connections | $(calc "round($vt_rps)") look-ups/s (\`c:batch\`, JSON decoded) | $(calc "round($wrk_rps)") req/s (\`wrk\`, nothing decoded) | $tp_ratio |
${vtpy_row}| \`c:batch\` of $big_n look-ups, concurrency $conns: jobs in flight at once (\`c:pending()\`, most seen) | $big_most | $conns (the concurrency) | $(calc "round($big_most / $conns, 3)") |
| peak RSS, \`c:each\` over $each_n look-ups (each result dropped) | $((each_big_kb / 1024)) MB (the list itself: $((each_list_kb / 1024)) MB) | $((each_small_kb / 1024)) MB (1000 look-ups) | $(calc "round($each_big_kb / $each_small_kb, 2)") |
| CPU per look-up (callgrind instructions) | $vt_per | $pl_per (plain libcurl + lua-cjson) | $cpu_ratio |
| peak RSS, ${big_mb} MB upload | $((up_kb / 1024)) MB | ${big_mb} MB file | $(calc "round($up_kb / 1024 / $big_mb, 3)") |
| peak RSS, ${big_mb} MB download | $((down_kb / 1024)) MB | ${big_mb} MB file | $(calc "round($down_kb / 1024 / $big_mb, 3)") |
| peak RSS, one small look-up (baseline) | $((base_kb / 1024)) MB | | |
$feed_row
| \`require "vt"\` (whole \`lua5.4\` run) | $req_ms ms | $bare_ms ms (\`lua5.4 -e ''\`) | $req_ratio |
| \`vt.client{...}\` + \`close\` | $mem_us µs (in memory) | $file_us µs (shared state file) | |
| fleet, SQLite: requests for 1000 alerts ($fl_entities entities, $fl_distinct distinct indicators), 8 workers | $sq_req requests, hit rate $(calc "round(($sq_hits + $sq_coal) / $fl_entities, 3)"), ${sq_s} s | $fl_entities (one request per entity) | $(calc "round($sq_req / $fl_entities, 3)") |
| fleet, Redis (cache and quota state): same alerts | $rd_req requests, hit rate $(calc "round(($rd_hits + $rd_coal) / $fl_entities, 3)"), ${rd_s} s | $fl_entities (one request per entity) | $(calc "round($rd_req / $fl_entities, 3)") |
| CPU per SQLite cache hit (\`c:file\`, 22 KB object) | $sqhit_us µs | $dec_us µs (\`vt.decode\` of the body alone) | $(calc "round($sqhit_us / $dec_us, 3)") |
| Redis cache hit on loopback (wall, round trip included) | $rdhit_us µs ($rdhit_cpu_us µs CPU) | 500 µs (goal) | $(calc "round($rdhit_us / 500, 3)") |
MD
cat "$out/results.md"
