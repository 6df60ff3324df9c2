#!/usr/bin/env bash
# Starts or stops the local S3-compatible server the tests use: versitygw
# with its posix backend, listening on 127.0.0.1 only.
#
#   scripts/s3-server.sh start STATE_DIR   # writes STATE_DIR/env to source
#   scripts/s3-server.sh stop STATE_DIR
#   scripts/s3-server.sh run CMD [ARGS…]   # start, run CMD with the env, stop
#
# The binary is built once from the Go module proxy at a pinned version and
# cached in $S3MEDIAFS_TOOLS (default ~/.cache/s3mediafs/tools).
set -euo pipefail

VERSITYGW_VERSION=v1.8.0
tools=${S3MEDIAFS_TOOLS:-$HOME/.cache/s3mediafs/tools}
bin=$tools/versitygw-$VERSITYGW_VERSION

die() { echo "s3-server.sh: $*" >&2; exit 1; }

install_versitygw() {
  [ -x "$bin" ] && return 0
  echo "building versitygw $VERSITYGW_VERSION (once; cached in $tools)…" >&2
  mkdir -p "$tools"
  local gobin
  gobin=$(mktemp -d)
  GOBIN=$gobin GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION"
  mv "$gobin/versitygw" "$bin"
  rmdir "$gobin"
}

start() {
  local state=$1
  mkdir -p "$state/data"
  install_versitygw
  local access=s3mediafs-test secret
  secret=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    local port=$(( 20000 + RANDOM % 40000 ))
    ROOT_ACCESS_KEY_ID=$access ROOT_SECRET_ACCESS_KEY=$secret \
      "$bin" --port "127.0.0.1:$port" --quiet posix "$state/data" >"$state/server.log" 2>&1 &
    local pid=$!
    for _ in $(seq 1 100); do
      if ! kill -0 "$pid" 2>/dev/null; then break; fi
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "$pid" >"$state/pid"
        cat >"$state/env" <<ENV
export S3MEDIAFS_TEST_ENDPOINT=http://127.0.0.1:$port
export S3MEDIAFS_TEST_ACCESS_KEY=$access
export S3MEDIAFS_TEST_SECRET_KEY=$secret
ENV
        echo "versitygw $VERSITYGW_VERSION serving on 127.0.0.1:$port (pid $pid)" >&2
        return 0
      fi
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  cat "$state/server.log" >&2 || true
  die "versitygw did not start"
}

stop() {
  local state=$1
  [ -f "$state/pid" ] || return 0
  local pid
  pid=$(cat "$state/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/pid"
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
  start "$run_state"
  # shellcheck disable=SC1091
  . "$run_state/env"
  "$@"
}

case "${1:-}" in
  run) shift; [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS…]"; run "$@" ;;
  start) [ -n "${2:-}" ] || die "usage: $0 start STATE_DIR"; start "$2" ;;
  stop)  [ -n "${2:-}" ] || die "usage: $0 stop STATE_DIR"; stop "$2" ;;
  install) install_versitygw; echo "$bin" ;;
  *) die "usage: $0 start|stop STATE_DIR | install" ;;
esac
