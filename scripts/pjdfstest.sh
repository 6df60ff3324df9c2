#!/usr/bin/env bash
# Runs the public POSIX conformance suite pjdfstest (pjd/pjdfstest, BSD
# licence) on a live s3mediafs mount and prints each suite's pass count.
#
#   scripts/pjdfstest.sh build            build pjdfstest out of its tree
#   scripts/pjdfstest.sh run [suite...]   mount, run the suites, unmount
#   scripts/pjdfstest.sh check            run every suite; fail on any
#                                         failure not listed below
#
# The source is the pinned tarball PJDFSTEST_SRC (default: the project's
# shared/tools/pjdfstest-src.tar.gz beside the repository, pjd/pjdfstest at
# 85a8aea9); it is built with autotools in PJDFSTEST_DIR (default
# ~/.cache/s3mediafs/pjdfstest).
# The mount uses the embedded store, or S3MEDIAFS_CONFIG when set. Run as
# root: the suites switch users and make device nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
src=${PJDFSTEST_SRC:-}
if [[ -z $src ]]; then
	for candidate in "$repo/../shared/tools/pjdfstest-src.tar.gz" /work/shared/tools/pjdfstest-src.tar.gz; do
		if [[ -f $candidate ]]; then
			src=$candidate
			break
		fi
	done
fi
dir=${PJDFSTEST_DIR:-$HOME/.cache/s3mediafs/pjdfstest}
default_suites=(mkdir open rmdir unlink truncate chmod chown rename symlink link ftruncate utimensat)

build() {
	if [[ -x $dir/pjdfstest && -d $dir/tests ]]; then
		return
	fi
	[[ -n $src && -f $src ]] || { echo "pjdfstest: no source tarball (set PJDFSTEST_SRC to pjdfstest-src.tar.gz)" >&2; exit 1; }
	local work
	work=$(mktemp -d)
	tar -xzf "$src" -C "$work"
	local top
	top=$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -1)
	if ! (cd "$top" && autoreconf -ifs >"$work/build.log" 2>&1 && ./configure -q >>"$work/build.log" 2>&1 &&
		make -s pjdfstest >>"$work/build.log" 2>&1); then
		tail -20 "$work/build.log" >&2
		echo "pjdfstest: the build failed (it needs autoconf, automake, make and a C compiler)" >&2
		rm -rf "$work"
		exit 1
	fi
	mkdir -p "$(dirname "$dir")"
	rm -rf "$dir"
	mv "$top" "$dir"
	rm -rf "$work"
}

# The expected failures, by test file, with why (the README lists them).
declare -A expected=(
	[mkdir/03.t]="a path over 1,024 bytes: S3 keys are at most 1,024 bytes"
	[open/03.t]="a path over 1,024 bytes"
	[rmdir/03.t]="a path over 1,024 bytes"
	[unlink/03.t]="a path over 1,024 bytes"
	[truncate/03.t]="a path over 1,024 bytes"
	[ftruncate/03.t]="a path over 1,024 bytes"
	[chmod/03.t]="a path over 1,024 bytes"
	[chown/03.t]="a path over 1,024 bytes"
	[symlink/03.t]="a path over 1,024 bytes"
	[rename/02.t]="a path over 1,024 bytes"
	[unlink/00.t]="hard links (link gives EPERM: an object has one key)"
	[rename/00.t]="hard links"
	[rename/23.t]="hard links"
	[link/00.t]="hard links"
	[link/01.t]="hard links"
	[link/02.t]="hard links"
	[link/03.t]="hard links"
	[link/04.t]="hard links"
	[link/05.t]="hard links"
	[link/06.t]="hard links"
	[link/07.t]="hard links"
	[link/09.t]="hard links"
	[link/10.t]="hard links"
	[link/11.t]="hard links"
	[link/15.t]="hard links"
	[link/17.t]="hard links"
	[rename/24.t]="a directory's link count is always 2 (not 2 plus its subdirectories)"
)

run() {
	local check=
	if [[ ${1:-} == --check ]]; then
		check=1
		shift
	fi
	local suites=("$@")
	[[ ${#suites[@]} -gt 0 ]] || suites=("${default_suites[@]}")
	build
	# base and pid are global: the EXIT trap runs after run has returned.
	base=$(mktemp -d /tmp/s3mediafs-pjdfstest.XXXXXX)
	mkdir -p "$base/mnt"
	go build -o "$base/s3mediafs" ./cmd/s3mediafs
	local store=(--embedded-s3 "$base/s3")
	if [[ -n ${S3MEDIAFS_CONFIG:-} ]]; then
		store=(--config "$S3MEDIAFS_CONFIG")
	fi
	"$base/s3mediafs" mount "${store[@]}" --cache-dir "$base/cache" \
		-o "control_socket=$base/ctl.sock,metrics_address=" "$base/mnt" 2>"$base/daemon.log" &
	pid=$!
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
	local total=0 passed=0 core_total=0 core_passed=0 unexpected=()
	for s in "${suites[@]}"; do
		local out n failed
		# Bounded: a test that hangs on the mount must fail the run, not
		# stall it.
		out=$(cd "$base/mnt" && timeout 600 prove -r "$dir/tests/$s" 2>&1) || true
		n=$(sed -n 's/^Files=[0-9]*, Tests=\([0-9]*\),.*/\1/p' <<<"$out")
		n=${n:-0}
		# prove's summary names each failing file with its count:
		#   /…/tests/mkdir/03.t (Wstat: 0 Tests: 3 Failed: 2)
		failed=0
		while read -r file count; do
			# (A file listed with 0 failed has only "TODO passed" notes.)
			[[ -n $file && $count -gt 0 ]] || continue
			failed=$((failed + count))
			local rel=${file#"$dir/tests/"}
			if [[ -z ${expected[$rel]:-} ]]; then
				unexpected+=("$rel: $count failed")
			fi
		done < <(sed -n 's/^\(\/[^ ]*\.t\) (Wstat: [0-9]* Tests: [0-9]* Failed: \([0-9]*\)).*/\1 \2/p' <<<"$out")
		if [[ $n -eq 0 ]]; then
			unexpected+=("$s: no tests ran")
		fi
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "pjdfstest: the daemon died during the $s suite; its log ends:" >&2
			tail -40 "$base/daemon.log" >&2
			exit 1
		fi
		printf 'pjdfstest %-10s %4d/%-4d passed\n' "$s" "$((n - failed))" "$n"
		if [[ -n ${PJDFSTEST_VERBOSE:-} ]]; then
			grep -E '^not ok' <<<"$out" || true
		fi
		total=$((total + n))
		passed=$((passed + n - failed))
		case $s in mkdir | open | rmdir | unlink | truncate)
			core_total=$((core_total + n))
			core_passed=$((core_passed + n - failed))
			;;
		esac
	done
	printf 'pjdfstest %-10s %4d/%-4d passed\n' total "$passed" "$total"
	printf 'pjdfstest %-10s %4d/%-4d passed (mkdir open rmdir unlink truncate)\n' core "$core_passed" "$core_total"
	if [[ -n $check && ${#unexpected[@]} -gt 0 ]]; then
		printf 'pjdfstest: unexpected failures:\n' >&2
		printf '  %s\n' "${unexpected[@]}" >&2
		exit 1
	fi
}

case ${1:-run} in
build) build ;;
run) shift || true; run "$@" ;;
check) run --check ;;
*) echo "usage: $0 build | run [suite...] | check" >&2; exit 2 ;;
esac
