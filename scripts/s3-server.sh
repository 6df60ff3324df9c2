#!/usr/bin/env bash
# Starts or stops a local S3-compatible server for the tests, listening on
# 127.0.0.1 only. Two implementations, because stores differ in ways the
# mount depends on (empty folders kept after deletes, in-progress uploads
# shown in listings, page sizes): versitygw with its posix backend, and
# SeaweedFS ("weed mini": master, volume, filer and S3 in one process).
#
#   scripts/s3-server.sh start STATE_DIR [STORE]  # writes STATE_DIR/env to source
#   scripts/s3-server.sh stop STATE_DIR
#   scripts/s3-server.sh run CMD [ARGS…]          # start, run CMD with the env, stop
#   scripts/s3-server.sh install [STORE]          # build and print the binary
#
# STORE is versitygw (the default) or seaweedfs; run takes it from
# $S3MEDIAFS_TEST_STORE. Each binary is built once from the Go module proxy
# at a pinned version and cached in $S3MEDIAFS_TOOLS (default
# ~/.cache/s3mediafs/tools).
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
SEAWEEDFS_VERSION=v0.0.0-20261109003541-7506e5f91cd6
tools=${S3MEDIAFS_TOOLS:-$HOME/.cache/s3mediafs/tools}

die() { echo "s3-server.sh: $*" >&2; exit 1; }

binary() {
  case "$1" in
    versitygw) echo "$tools/versitygw-$VERSITYGW_VERSION" ;;
    seaweedfs) echo "$tools/weed-$SEAWEEDFS_VERSION" ;;
    *) die "unknown store '$1' (versitygw or seaweedfs)" ;;
  esac
}

install() {
  local store=$1 bin
  bin=$(binary "$store")
  [ -x "$bin" ] && return 0
  mkdir -p "$tools"
  local work
  work=$(mktemp -d)
  case "$store" in
    versitygw)
      echo "building versitygw $VERSITYGW_VERSION (once; cached in $tools)…" >&2
      GOBIN=$work GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
      mv "$work/versitygw" "$bin.tmp"
      ;;
    seaweedfs)
      # go install refuses the module (it has a replace directive): build
      # inside a writable copy of its source instead.
      echo "building SeaweedFS $SEAWEEDFS_VERSION (once, several minutes; cached in $tools)…" >&2
      local src
      src=$(GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$SEAWEEDFS_VERSION" |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
      [ -d "$src" ] || die "go mod download gave no source directory for SeaweedFS"
      cp -r "$src" "$work/src"
      chmod -R u+w "$work/src"
      (cd "$work/src" && go build -o "$bin.tmp" ./weed)
      ;;
  esac
  mv "$bin.tmp" "$bin"
  rm -rf "$work"
}

# launch starts the server on a random port base and prints its pid;
# $state/env gets the endpoint once it answers.
launch() {
  local store=$1 state=$2 port=$3 access=$4 secret=$5 bin
  bin=$(binary "$store")
  case "$store" in
    versitygw)
      ROOT_ACCESS_KEY_ID=$access ROOT_SECRET_ACCESS_KEY=$secret \
        "$bin" --port "127.0.0.1:$port" --quiet posix "$state/data" >"$state/server.log" 2>&1 &
      echo "$port" >"$state/s3port"
      ;;
    seaweedfs)
      # Ten ports from the base: master, volume, filer, S3 and admin, each
      # with its gRPC port. The S3 port is the endpoint. Each bucket takes
      # a volume of its own, and the volumes a disk holds are its free space
      # over the volume size: small volumes leave room for the hundred-odd
      # buckets a test run makes (at 1 GiB, 72 on a 74 GiB disk ran out and
      # every PUT failed with InternalError).
      cat >"$state/s3.json" <<JSON
{"identities":[{"name":"s3mediafs-test","credentials":[{"accessKey":"$access","secretKey":"$secret"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
      chmod 600 "$state/s3.json"
      "$bin" mini -dir="$state/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -master.port="$port" -master.port.grpc=$((port + 1)) \
        -volume.port=$((port + 2)) -volume.port.grpc=$((port + 3)) \
        -filer.port=$((port + 4)) -filer.port.grpc=$((port + 5)) \
        -s3.port=$((port + 6)) -s3.port.grpc=$((port + 7)) \
        -admin.port=$((port + 8)) -admin.port.grpc=$((port + 9)) -admin.port.legacy=0 \
        -filer.localSocket="$state/filer.sock" -s3.localSocket="$state/s3.sock" \
        -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false -admin.ui=false \
        -master.volumeSizeLimitMB=64 -master.telemetry=false -s3.config="$state/s3.json" >"$state/server.log" 2>&1 &
      echo $((port + 6)) >"$state/s3port"
      echo "$port" >"$state/baseport"
      ;;
  esac
  echo $!
}

start() {
  local state=$1 store=${2:-versitygw}
  mkdir -p "$state/data"
  install "$store"
  local access=s3mediafs-test secret
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local base=$(( 20000 + RANDOM % 40000 ))
    local pid s3port
    pid=$(launch "$store" "$state" "$base" "$access" "$secret")
    s3port=$(cat "$state/s3port")
    echo "$pid" >"$state/pid"
    for _ in $(seq 1 300); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      # Ready when the S3 port answers an unsigned request with an S3
      # error (403), not before: SeaweedFS opens the port before its
      # filer is up.
      if curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$s3port/" 2>/dev/null | grep -q '^[2-4]'; then
        cat >"$state/env" <<ENV
export S3MEDIAFS_TEST_ENDPOINT=http://127.0.0.1:$s3port
export S3MEDIAFS_TEST_ACCESS_KEY=$access
export S3MEDIAFS_TEST_SECRET_KEY=$secret
export S3MEDIAFS_TEST_STORE=$store
export S3MEDIAFS_TEST_STORE_PID=$pid
ENV
        echo "$store serving S3 on 127.0.0.1:$s3port (pid $pid)" >&2
        return 0
      fi
      sleep 0.1
    done
    stop "$state"
  done
  cat "$state/server.log" >&2 || true
  die "$store did not start"
}

stop() {
  local state=$1
  [ -f "$state/pid" ] || return 0
  local pid
  pid=$(cat "$state/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -f "$state/pid"
  if [ -f "$state/baseport" ]; then
    # SeaweedFS puts its gRPC sockets in /tmp whatever it is told.
    local base
    base=$(cat "$state/baseport")
    for p in $(seq "$base" $((base + 9))); do rm -f /tmp/seaweedfs-*-"$p".sock; done
    rm -f "$state/baseport"
  fi
}

# run starts a server in a temporary state directory, runs the command with
# its environment, and stops it and removes the directory whatever happens.
run_state=
run_cleanup() {
  local rc=$?
  if [ -n "$run_state" ]; then
    stop "$run_state"
    rm -rf "$run_state"
  fi
  exit "$rc"
}

run() {
  run_state=$(mktemp -d /tmp/s3mediafs-s3.XXXXXX)
  trap run_cleanup EXIT
  start "$run_state" "${S3MEDIAFS_TEST_STORE:-versitygw}"
  # shellcheck disable=SC1091
  . "$run_state/env"
  "$@"
}

case "${1:-}" in
  run) shift; [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS…]"; run "$@" ;;
  start) [ -n "${2:-}" ] || die "usage: $0 start STATE_DIR [STORE]"; start "$2" "${3:-versitygw}" ;;
  stop)  [ -n "${2:-}" ] || die "usage: $0 stop STATE_DIR"; stop "$2" ;;
  install) store=${2:-versitygw}; install "$store"; binary "$store" ;;
  *) die "usage: $0 start STATE_DIR [STORE] | stop STATE_DIR | run CMD [ARGS…] | install [STORE]" ;;
esac
