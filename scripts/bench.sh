#!/usr/bin/env bash
# Benchmarks, each figure a ratio against its baseline measured in the same
# run (a plain local directory, the FUSE floor: go-fuse's loopback with
# passthrough and one-hour caches, rclone mount, direct SDK calls through
# the same proxy): the Synapse mixes (media; thumbnail-heavy, also with
# 20 ms added per store request; writes, warm reads, a cold purge and cold
# reads on a wiped cache), 1 GiB sequential I/O, eviction
# with 1,000,000 index entries, import against the provider's upload loop,
# reconcile of 1,000,000 media. Run as root (it mounts and drops the page
# cache). Results and their reading: scripts/bench/RESULTS.md.
#   scripts/bench.sh                         # everything
#   scripts/bench.sh mix                     # the Synapse mixes only, on versitygw and SeaweedFS
#   scripts/bench.sh synapse                 # the real Synapse's HTTP API, 3 runs
#   S3MEDIAFS_BENCH_FILES=300 scripts/bench.sh mix   # a smaller thumbnail mix
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
# rclone mount is the peer the CPU figures are compared with: installed
# from Debian where apt can, skipped (and said so) where it cannot.
if ! command -v rclone >/dev/null || ! command -v fusermount3 >/dev/null; then
	(apt-get update -qq && apt-get install -y -qq rclone fuse3) >/dev/null 2>&1 ||
		echo "bench: cannot install rclone and fuse3; no rclone figures" >&2
fi
if [ "$what" = mix ] && [ -z "${S3MEDIAFS_TEST_STORE:-}" ]; then
	# The mixes (cold purge and cold read included) on both stores, one
	# after the other: stores differ in what they answer and how fast.
	for store in versitygw seaweedfs; do
		echo "=== the Synapse mixes on $store"
		S3MEDIAFS_TEST_STORE=$store "$0" mix
	done
	exit 0
fi
exec scripts/s3-server.sh run bash -c '
  if [ "'"$what"'" = synapse ]; then
    go test -run XXX -bench SynapseHTTP -benchtime 1x -count 3 -timeout 60m -v ./scripts/e2e | grep -Ev "level=(DEBUG|INFO)"
    exit 0
  fi
  go test -run XXX -bench SynapseMix -benchtime 1x -timeout 60m -v ./scripts/e2e | grep -Ev "level=(DEBUG|INFO)"
  go test -run XXX -bench SynapseHTTP -benchtime 1x -timeout 30m -v ./scripts/e2e | grep -Ev "level=(DEBUG|INFO)"
  [ "'"$what"'" = mix ] && exit 0
  go test -run XXX -bench Sequential1GiB -benchtime 1x -timeout 30m -v ./scripts/e2e | grep -Ev "level=(DEBUG|INFO)"
  go test -run XXX -bench Import -benchtime 3x ./cmd/s3mediafs
  go test -run XXX -bench "Evict(Pass)?MillionEntries" -benchtime 1000x -timeout 30m ./cache
  go test -run XXX -bench OpenMillion -benchtime 5x -timeout 30m ./cache
  go test -run XXX -bench MountMillion -benchtime 3x -timeout 30m ./cache
  go test -run XXX -bench ReconcileMillion -benchtime 1x -timeout 30m ./cmd/s3mediafs/reconcile
'
