#!/usr/bin/env bash
# The test command: runs go vet and every test with the race detector
# against a local versitygw and a throwaway PostgreSQL, then the suites
# that talk to a store again against a local SeaweedFS (stores differ:
# empty folders kept after deletes, in-progress uploads in listings, page
# sizes). Each server is stopped and its state removed whatever happens.
# Then pjdfstest on a live mount (scripts/pjdfstest.sh). Run as root (the
# tests mount FUSE filesystems). Arguments go to go test.
set -euo pipefail
cd "$(dirname "$0")/.."
# The reconcile tests read a real PostgreSQL: one throwaway server serves
# the whole run (scripts/postgres.sh). Without PostgreSQL installed those
# tests skip, except in CI.
if [ -z "${S3MEDIAFS_TEST_POSTGRES:-}" ] && scripts/postgres.sh available; then
  exec scripts/postgres.sh run "$0" "$@"
fi
S3MEDIAFS_TEST_STORE=versitygw scripts/s3-server.sh run \
  bash -c 'go vet ./... && go test -race -count=1 -timeout 20m ./... "$@"' test "$@"
S3MEDIAFS_TEST_STORE=seaweedfs scripts/s3-server.sh run \
  bash -c 'go test -race -count=1 -timeout 20m ./s3/... ./fs/... ./cmd/... ./scripts/e2e/... "$@"' test "$@"
# The public POSIX conformance suite (pjd/pjdfstest) on a live mount:
# each suite's pass count, and a failure on anything not expected.
scripts/pjdfstest.sh check
