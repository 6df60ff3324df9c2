#!/usr/bin/env bash
# The test command: starts the local S3 server, runs go vet and every test
# with the race detector, and stops the server, leaving nothing behind.
# Run as root (the tests mount FUSE filesystems).
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/s3-server.sh run bash -c 'go vet ./... && go test -race -count=1 -timeout 20m ./... "$@"' test "$@"
