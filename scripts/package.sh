#!/usr/bin/env bash
# Builds the Debian package with dpkg-deb:
#   scripts/package.sh                 # → dist/s3mediafs_<version>_<arch>.deb
#   VERSION=1.2.0 OUT_DIR=/tmp scripts/package.sh
# GOARCH cross-builds (amd64, arm64, armhf via GOARCH=arm, i386 via 386).
# Prints the path of the package it wrote.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/go/bin
command -v dpkg-deb >/dev/null || { echo "package.sh: dpkg-deb is missing (apt-get install dpkg)" >&2; exit 1; }

goarch=${GOARCH:-$(go env GOARCH)}
case $goarch in
  386) arch=i386 ;; arm) arch=armhf ;; *) arch=$goarch ;;
esac
if [ -z "${VERSION:-}" ]; then
  # No release tags yet: a snapshot version that sorts by commit date.
  if rev=$(git rev-parse --short=12 HEAD 2>/dev/null); then
    VERSION="0.1.0~git$(git log -1 --format=%cd --date=format:%Y%m%d HEAD).$rev"
  else
    VERSION=0.1.0
  fi
fi
[[ $VERSION =~ ^[0-9][A-Za-z0-9.+~-]*$ ]] || { echo "package.sh: $VERSION is not a Debian version" >&2; exit 1; }
out=${OUT_DIR:-dist}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
GOARCH=$goarch CGO_ENABLED=0 go build -trimpath -buildvcs=auto \
  -ldflags "-s -w -X main.version=$VERSION" -o "$work/s3mediafs" ./cmd/s3mediafs
help=$work/s3mediafs
[ "$goarch" = "$(go env GOHOSTARCH)" ] || { go build -o "$work/host" ./cmd/s3mediafs; help=$work/host; }

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/sbin" "$root/lib/systemd/system" \
  "$root/etc" "$root/usr/share/doc/s3mediafs/examples" "$root/usr/share/man/man8"
install -d -m 0700 "$root/var/cache/s3mediafs"
install -m 0755 "$work/s3mediafs" "$root/usr/bin/s3mediafs"
ln -s /usr/bin/s3mediafs "$root/sbin/mount.s3mediafs"
sed 's#/usr/local/bin/s3mediafs#/usr/bin/s3mediafs#; s#Install: scripts/install.sh (or copy to /etc/systemd/system/)#Installed by the s3mediafs package#' \
  scripts/deploy/s3mediafs.service > "$root/lib/systemd/system/s3mediafs.service"
chmod 0644 "$root/lib/systemd/system/s3mediafs.service"
install -m 0600 scripts/deploy/s3mediafs.yaml.example "$root/etc/s3mediafs.yaml"
install -m 0644 README.md scripts/deploy/debian/copyright "$root/usr/share/doc/s3mediafs/"
install -m 0644 scripts/deploy/fstab.example scripts/deploy/s3mediafs-media.mount.example \
  scripts/deploy/s3mediafs.yaml.example "$root/usr/share/doc/s3mediafs/examples/"
gzip -9n "$root/usr/share/doc/s3mediafs/README.md"

# The manual page is the binary's own help, so it cannot drift from it.
{
  echo ".TH S3MEDIAFS 8 \"$(date -u +%Y-%m-%d)\" \"s3mediafs $VERSION\" \"System Administration\""
  echo ".SH NAME"
  echo "s3mediafs, mount.s3mediafs \\- Synapse media store on S3 behind a local write-back cache"
  echo ".SH SYNOPSIS"
  echo ".nf"
  "$help" --help | sed 's/\\/\\e/g; s/^[.'"'"']/\\\&&/'
  echo ".fi"
  echo ".SH MOUNT FLAGS"
  echo ".nf"
  "$help" mount -h 2>&1 | sed 's/\\/\\e/g; s/^[.'"'"']/\\\&&/'
  echo ".fi"
  echo ".SH FILES"
  echo "/etc/s3mediafs.yaml, /var/cache/s3mediafs, /usr/share/doc/s3mediafs/README.md.gz"
} | gzip -9n > "$root/usr/share/man/man8/s3mediafs.8.gz"
ln -s s3mediafs.8.gz "$root/usr/share/man/man8/mount.s3mediafs.8.gz"
chmod 0644 "$root/usr/share/man/man8/s3mediafs.8.gz"

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed "s/@VERSION@/$VERSION/; s/@ARCH@/$arch/; s/@SIZE@/$size/" scripts/deploy/debian/control > "$root/DEBIAN/control"
install -m 0644 scripts/deploy/debian/conffiles "$root/DEBIAN/conffiles"
install -m 0755 scripts/deploy/debian/postinst scripts/deploy/debian/prerm scripts/deploy/debian/postrm "$root/DEBIAN/"

mkdir -p "$out"
deb=$out/s3mediafs_${VERSION}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
