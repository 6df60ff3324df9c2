#!/usr/bin/env bash
# Runs the public POSIX conformance suite pjdfstest (pjd/pjdfstest, BSD
# licence) on a live s3mediafs mount and prints each suite's pass count.
#
#   scripts/pjdfstest.sh build            build pjdfstest out of its tree
#   scripts/pjdfstest.sh run [suite...]   mount, run the suites, unmount
#
# The source is the pinned tarball PJDFSTEST_SRC (default
# ../shared/tools/pjdfstest-src.tar.gz beside the repository); it is built
# with autotools in PJDFSTEST_DIR (default ~/.cache/s3mediafs/pjdfstest).
# The mount uses the embedded store, or S3MEDIAFS_CONFIG when set. Run as
# root: the suites switch users and make device nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
src=${PJDFSTEST_SRC:-$repo/../shared/tools/pjdfstest-src.tar.gz}
dir=${PJDFSTEST_DIR:-$HOME/.cache/s3mediafs/pjdfstest}
default_suites=(mkdir open rmdir unlink truncate chmod chown rename symlink link ftruncate utimensat)

build() {
	if [[ -x $dir/pjdfstest && -d $dir/tests ]]; then
		return
	fi
	[[ -f $src ]] || { echo "pjdfstest: no source tarball at $src" >&2; exit 1; }
	local work
	work=$(mktemp -d)
	tar -xzf "$src" -C "$work"
	local top
	top=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
	(cd "$top" && autoreconf -ifs >/dev/null 2>&1 && ./configure -q >/dev/null && make -s pjdfstest >/dev/null)
	mkdir -p "$(dirname "$dir")"
	rm -rf "$dir"
	mv "$top" "$dir"
	rm -rf "$work"
}

run() {
	local suites=("$@")
	[[ ${#suites[@]} -gt 0 ]] || suites=("${default_suites[@]}")
	build
	local base
	base=$(mktemp -d /tmp/s3mediafs-pjdfstest.XXXXXX)
	mkdir -p "$base/mnt"
	go build -o "$base/s3mediafs" ./cmd/s3mediafs
	local store=(--embedded-s3 "$base/s3")
	if [[ -n ${S3MEDIAFS_CONFIG:-} ]]; then
		store=(--config "$S3MEDIAFS_CONFIG")
	fi
	"$base/s3mediafs" mount "${store[@]}" --cache-dir "$base/cache" \
		-o "control_socket=$base/ctl.sock,metrics_address=" "$base/mnt" 2>"$base/daemon.log" &
	local pid=$!
	cleanup() {
		umount "$base/mnt" 2>/dev/null || umount -l "$base/mnt" 2>/dev/null || true
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
		rm -rf "$base"
	}
	trap cleanup EXIT
	for _ in $(seq 100); do
		findmnt -n "$base/mnt" >/dev/null && break
		sleep 0.1
	done
	findmnt -n "$base/mnt" >/dev/null || { cat "$base/daemon.log" >&2; exit 1; }
	local total=0 passed=0
	for s in "${suites[@]}"; do
		local out n ok
		out=$(cd "$base/mnt" && prove -r "$dir/tests/$s" 2>&1 || true)
		# prove prints "Failed x/y subtests" per file; the TAP totals
		# come from "Files=…, Tests=N" and the failures listed.
		n=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' <<<"$out")
		n=${n:-0}
		ok=$((n - $(grep -o 'Failed [0-9]*/' <<<"$out" | awk '{sub("/", "", $2); s += $2} END {print s + 0}')))
		printf 'pjdfstest %-10s %4d/%-4d passed\n' "$s" "$ok" "$n"
		if [[ -n ${PJDFSTEST_VERBOSE:-} ]]; then
			grep -E '^(/|Failed|t/|  Failed tests)' <<<"$out" | grep -v ' ok$' || true
		fi
		total=$((total + n))
		passed=$((passed + ok))
	done
	printf 'pjdfstest %-10s %4d/%-4d passed\n' total "$passed" "$total"
}

case ${1:-run} in
build) build ;;
run) shift || true; run "$@" ;;
*) echo "usage: $0 build | run [suite...]" >&2; exit 2 ;;
esac
