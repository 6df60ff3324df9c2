#!/usr/bin/env bash
# Counts the FUSE requests the kernel sends for one Synapse write (makedirs,
# open, 16 KiB writes, close, getsize, re-read) and for one warm read of a
# clean cached file, from the daemon's --debug-fuse log. Mounts over the
# EMBEDDED test store in a scratch directory (not the cloud). Run as root.
#   scripts/bench/fuse-ops.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
base=$(mktemp -d /tmp/s3mediafs-fuse-ops.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	mountpoint -q "$base/mnt" && umount -l "$base/mnt"
	rm -rf "$base"
}
trap cleanup EXIT
go build -o "$base/s3mediafs" ./cmd/s3mediafs
mkdir -p "$base/mnt"
"$base/s3mediafs" mount --embedded-s3 "$base/s3" --cache-dir "$base/cache" --debug-fuse \
	-o "log_level=debug,metrics_address=,control_socket=$base/control.sock" "$base/mnt" >"$base/log" 2>&1 &
pid=$!
for _ in $(seq 100); do mountpoint -q "$base/mnt" && break; sleep 0.1; done
mountpoint -q "$base/mnt" || { cat "$base/log"; exit 1; }

synapse_write() {
	python3 - "$1" <<'PY'
import os, sys
p = sys.argv[1]
os.makedirs(os.path.dirname(p), exist_ok=True)
data = b"m" * 50000
with open(p, "wb") as f:
    for i in range(0, len(data), 16384):
        f.write(data[i:i + 16384])
os.path.getsize(p)
with open(p, "rb") as f:
    f.read()
PY
}
# txns prints the index transactions so far: "updates reads".
txns() {
	"$base/s3mediafs" status --json --socket "$base/control.sock" |
		python3 -c 'import json, sys; s = json.load(sys.stdin); print(s["index_updates"], s["index_reads"])'
}
# Counts the requests logged after line $1, by opcode, and the index
# transactions since txns printed $2 $3.
count() {
	sleep 0.3
	tail -n +"$1" "$base/log" | grep -oE 'rx [0-9]+: [A-Z_]+' | awk '{print $3}' | sort | uniq -c | sort -rn |
		awk '{n += $1; s = s sprintf("%s %d, ", $2, $1)} END {sub(/, $/, "", s); printf "%d requests (%s)", n, s}'
	read -r u r < <(txns)
	echo "; index transactions: $((u - $2)) read-write, $((r - $3)) read-only"
}
synapse_write "$base/mnt/local_content/aa/bb/warmup" # the trees above exist, as on a live server
"$base/s3mediafs" flush --socket "$base/control.sock" >/dev/null
sleep 0.5
read -r u0 r0 < <(txns)
from=$(($(wc -l <"$base/log") + 1))
synapse_write "$base/mnt/local_content/aa/cc/media"
echo "one Synapse write: $(count "$from" "$u0" "$r0")"
"$base/s3mediafs" flush --socket "$base/control.sock" >/dev/null
sleep 0.5
python3 -c 'import sys; open(sys.argv[1], "rb").read()' "$base/mnt/local_content/aa/cc/media" # settles the kernel's view
sleep 0.5
read -r u0 r0 < <(txns)
from=$(($(wc -l <"$base/log") + 1))
python3 -c 'import sys; open(sys.argv[1], "rb").read()' "$base/mnt/local_content/aa/cc/media"
echo "one warm read (open, fstat, read, close): $(count "$from" "$u0" "$r0")"
