#!/usr/bin/env bash
# Benchmarks: the Synapse media mix, warm and cold reads, the drain, 1 GiB
# sequential I/O and S3 requests per file, each as a ratio against its
# baseline measured in the same run (plain local directory, direct SDK
# calls); eviction with 1,000,000 index entries; import against the
# provider's upload loop; reconcile of 1,000,000 media (time and peak RSS
# against a plain read of the same rows). Run as root (it mounts and drops the page cache).
#   scripts/bench.sh                       # the full mix (1,000 small files…)
#   S3MEDIAFS_BENCH_SMALL=200 scripts/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/s3-server.sh run bash -c '
  go test -run XXX -bench SynapseMix -benchtime 1x -timeout 30m -v ./scripts/e2e | grep -Ev "level=(DEBUG|INFO)"
  go test -run XXX -bench Import -benchtime 3x ./cmd/s3mediafs
  go test -run XXX -bench "Evict(Pass)?MillionEntries" -benchtime 1000x -timeout 30m ./cache
  go test -run XXX -bench OpenMillion -benchtime 5x -timeout 30m ./cache
  go test -run XXX -bench MountMillion -benchtime 3x -timeout 30m ./cache
  go test -run XXX -bench ReconcileMillion -benchtime 1x -timeout 30m ./cmd/s3mediafs/reconcile
'
