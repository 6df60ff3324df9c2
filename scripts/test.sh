#!/usr/bin/env bash
# The test command: starts the local S3 server, runs go vet and every test
# with the race detector, and stops the server, leaving nothing behind.
# Run as root (the tests mount FUSE filesystems).
set -euo pipefail
cd "$(dirname "$0")/.."

state=$(mktemp -d /tmp/s3mediafs-test.XXXXXX)
cleanup() {
  scripts/s3-server.sh stop "$state"
  rm -rf "$state"
}
trap cleanup EXIT
scripts/s3-server.sh start "$state"
# shellcheck disable=SC1091
. "$state/env"

go vet ./...
go test -race -count=1 -timeout 20m ./... "$@"
