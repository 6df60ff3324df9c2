#!/usr/bin/env bash
# The test command: runs go vet and every test with the race detector
# against a local versitygw and a throwaway PostgreSQL, then the suites
# that talk to a store again against a local SeaweedFS (stores differ:
# empty folders kept after deletes, in-progress uploads in listings, page
# sizes). Each server is stopped and its state removed whatever happens.
# pjdfstest runs on a live mount beside the second pass
# (scripts/pjdfstest.sh). Run as root (the
# tests mount FUSE filesystems). Arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The reconcile tests read a real PostgreSQL: one throwaway server serves
# the whole run (scripts/postgres.sh). Without PostgreSQL installed those
# tests skip, except in CI.
if [ -z "${S3MEDIAFS_TEST_POSTGRES:-}" ] && scripts/postgres.sh available; then
  exec scripts/postgres.sh run "$0" "$@"
fi
# The end-to-end tests that mostly wait (the real Synapse, daemon crashes
# and restarts) run in a second go test process
# beside the others: each process has its own binary, temporary root and
# leak checks, so the two do not see each other. Arguments given (a -run of
# your own) run everything in one process instead.
waiting='^Test(RealSynapse|Crash|Upgrade|Reload|WriterOpenAcrossCrash)'
split_run() { # packages… -- go test arguments…
  local pkgs=()
  while [ $# -gt 0 ] && [ "$1" != -- ]; do pkgs+=("$1"); shift; done
  shift
  if [ $# -gt 0 ]; then
    go test -race -count=1 -timeout 20m "${pkgs[@]}" "$@"
    return
  fi
  go test -race -count=1 -timeout 20m -skip "$waiting" "${pkgs[@]}" & local rest=$!
  go test -race -count=1 -timeout 20m -run "$waiting" ./scripts/e2e & local slow=$!
  local rc=0
  wait $rest || rc=1
  wait $slow || rc=1
  return $rc
}
export -f split_run
export waiting
S3MEDIAFS_TEST_STORE=versitygw scripts/s3-server.sh run \
  bash -c 'go vet ./... && split_run ./... -- "$@"' test "$@"
# The public POSIX conformance suite (pjd/pjdfstest) on a live mount of
# its own over the embedded store: each suite's pass count, and a failure
# on anything not expected. It uses neither test server, so it runs beside
# the SeaweedFS pass; its report follows that pass's.
pjdfstest_log=$(mktemp)
scripts/pjdfstest.sh check >"$pjdfstest_log" 2>&1 &
pjdfstest=$!
rc=0
S3MEDIAFS_TEST_STORE=seaweedfs scripts/s3-server.sh run \
  bash -c 'split_run ./s3/... ./fs/... ./cmd/... ./scripts/e2e/... -- "$@"' test "$@" || rc=1
wait "$pjdfstest" || rc=1
cat "$pjdfstest_log"
rm -f "$pjdfstest_log"
exit $rc
