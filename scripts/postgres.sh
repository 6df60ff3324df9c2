#!/usr/bin/env bash
# A throwaway PostgreSQL server for the reconcile tests: a new cluster in a
# temporary directory, listening on 127.0.0.1 and a Unix socket in that
# directory only, stopped and removed at the end.
#
#   scripts/postgres.sh run CMD [ARGS…]   # start, run CMD with
#                                         # S3MEDIAFS_TEST_POSTGRES set, stop
#   scripts/postgres.sh install           # Debian's postgresql, if missing
#   scripts/postgres.sh available         # exit 0 if a server can be run
#
# S3MEDIAFS_TEST_POSTGRES is a libpq key=value string for a superuser; each
# test creates a database of its own in it.
set -euo pipefail

die() { echo "postgres.sh: $*" >&2; exit 1; }

bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] && [ -x "$d/initdb" ] || return 1
  echo "$d"
}

install() {
  bindir >/dev/null && return 0
  apt-get update -qq
  # The cluster Debian's package would create and start is not used:
  # policy-rc.d keeps the package from starting it.
  local policy=/usr/sbin/policy-rc.d made=
  if [ ! -e $policy ]; then
    printf '#!/bin/sh\nexit 101\n' > $policy && chmod 0755 $policy && made=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || { [ -z "$made" ] || rm -f $policy; die "apt-get install postgresql failed"; }
  [ -z "$made" ] || rm -f $policy
  bindir >/dev/null || die "postgresql installed, but no initdb under /usr/lib/postgresql"
}

state=
cleanup() {
  local rc=$?
  if [ -n "$state" ]; then
    (cd "$state" && runuser -u postgres -- "$bin/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1) || true
    rm -rf "$state"
  fi
  exit "$rc"
}

run() {
  bin=$(bindir) || die "no PostgreSQL here: run '$0 install' (as root)"
  id postgres >/dev/null 2>&1 || die "no postgres user (Debian's postgresql package makes it)"
  state=$(mktemp -d /tmp/s3mediafs-pg.XXXXXX)
  trap cleanup EXIT
  chown postgres "$state"
  chmod 0755 "$state"
  local port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  # From the state directory: the postgres user may not enter ours.
  (cd "$state" &&
    runuser -u postgres -- "$bin/initdb" -D "$state/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null &&
    runuser -u postgres -- "$bin/pg_ctl" -D "$state/data" -l "$state/log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $state -c fsync=off" start >/dev/null) ||
    { cat "$state/log" >&2 2>/dev/null; die "PostgreSQL did not start"; }
  echo "postgres serving on 127.0.0.1:$port" >&2
  export S3MEDIAFS_TEST_POSTGRES="host=127.0.0.1 port=$port user=postgres dbname=postgres sslmode=disable"
  "$@"
}

case "${1:-}" in
  run) shift; [ $# -gt 0 ] || die "usage: $0 run CMD [ARGS…]"; run "$@" ;;
  install) install ;;
  available) bindir >/dev/null && id postgres >/dev/null 2>&1 ;;
  *) die "usage: $0 run CMD [ARGS…] | install | available" ;;
esac
