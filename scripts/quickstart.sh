#!/usr/bin/env bash
# Quickstart: builds s3mediafs and mounts it at /tmp/s3mediafs-quickstart/mnt
# over an EMBEDDED S3 server that keeps objects in
# /tmp/s3mediafs-quickstart/s3 on this machine (not in any cloud).
# Serves in the foreground; Ctrl-C unmounts. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-/tmp/s3mediafs-quickstart}
mkdir -p "$base/mnt"
go build -o "$base/s3mediafs" ./cmd/s3mediafs
echo "quickstart: mounting $base/mnt over the EMBEDDED test store in $base/s3 (NOT the cloud)" >&2
exec "$base/s3mediafs" mount --embedded-s3 "$base/s3" --cache-dir "$base/cache" "$base/mnt"
