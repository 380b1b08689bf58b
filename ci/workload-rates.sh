#!/usr/bin/env bash
# The recorded write rate of each workload against its service, next to the
# native demo-kv workload: each runs 3 s with no fault, 8 connections, open
# loop at a rate no service here reaches (so each connection writes as fast
# as answers come), one trial; the rate is acknowledged writes per second
# from report.json. Every op is recorded, as in any run.
#
# Usage: ci/workload-rates.sh [OUT_DIR] (default target/workload-rates);
# needs python3, and for their rows mariadb-server, postgresql, etcd-server.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/workload-rates}
cargo build --release --quiet
export PATH="$PWD/target/release:$PATH"
rm -rf "$out" && mkdir -p "$out"
cp tests/fixtures/workloads/* examples/notes/notes.py "$out/"
load='rate = 100000
duration = "3s"
connections = 8'

row() { # label scenario-file
    local slug
    slug=$(basename "$2" .toml)
    crashlab run "$2" --out "$out/run-$slug" --seed 1 >"$out/$slug.log" 2>&1 || true
    python3 - "$1" "$out/run-$slug/report.json" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
try:
    t = json.load(open(path))["trials"][0]
    print(f"| {name} | {t['ops']['ok'] / 3:.0f} | {t['ops']['invoked']} | {t['ops']['unknown'] + t['ops']['fail']} |")
except Exception as e:
    print(f"| {name} | – ({e}) | | |")
PY
}

# Each scenario: the fixture's target(s), its workload at full speed, no fault.
strip() { # fixture -> text without [[fault]], [expect], [trials], rate, duration
    python3 - "$1" "$load" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
text = re.split(r"\n\[\[fault\]\]", text)[0]
text = re.sub(r"\nrate = .*", "", text)
text = re.sub(r"\nduration = .*", "", text)
text = text.replace("[workload]\n", "[workload]\n" + sys.argv[2] + "\n", 1)
print(text.replace('"--flush-interval", "700ms"', '"--flush-interval", "1s"'))
PY
}
strip tests/fixtures/workloads/kv-command.toml | sed -e 's/^kind = "command"/kind = "demo-kv"/' -e '/^client = /d' -e '/^read_back = /d' >"$out/native.toml"
strip tests/fixtures/workloads/kv-http.toml >"$out/http.toml"
strip tests/fixtures/workloads/kv-command.toml >"$out/lines.toml"
strip tests/fixtures/workloads/kv-command.toml | sed -e 's|^client = .*|write = ["./kv_put.sh", "{host}", "{port}", "{key}", "{value}"]|' >"$out/per-write.toml"
strip examples/notes/notes.toml >"$out/notes.toml"
echo "| workload, service | acknowledged writes/s | sent | not acknowledged |"
echo "|---|---:|---:|---:|"
row "demo-kv (native), demo-kv fsync never" "$out/native.toml"
row "http, demo-kv behind a Python front" "$out/http.toml"
row "command line protocol (Python client), demo-kv" "$out/lines.toml"
row "command per write (bash client), demo-kv" "$out/per-write.toml"
row "http, notes.py (no fsync)" "$out/notes.toml"
if command -v mariadbd >/dev/null; then
    strip scenarios/mariadb/flush-2-kill.toml >"$out/mariadb.toml"
    row "sql, MariaDB (flush_log_at_trx_commit 2)" "$out/mariadb.toml"
fi
if command -v etcd >/dev/null; then
    strip scenarios/etcd/kill-follower.toml >"$out/etcd.toml"
    cp scenarios/etcd/member.py "$out/"
    row "http, etcd (3 members, JSON gateway)" "$out/etcd.toml"
fi
