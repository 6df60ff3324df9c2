#!/usr/bin/env bash
# Installs s3mediafs: the binary, the mount helper link, the systemd units
# and a sample config (0600). Run as root from the repository.
#   scripts/install.sh            # builds ./cmd/s3mediafs with go
#   BINARY=path scripts/install.sh
#   DESTDIR=/tmp/stage scripts/install.sh   # stage instead of installing
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${DESTDIR:-}
prefix=${PREFIX:-/usr/local}

bin=${BINARY:-}
if [ -z "$bin" ]; then
  bin=$(mktemp -d)/s3mediafs
  go build -trimpath -o "$bin" ./cmd/s3mediafs
fi

install -d -m 0755 "$dest$prefix/bin" "$dest/sbin" "$dest/etc/systemd/system" "$dest$prefix/share/doc/s3mediafs"
install -m 0755 "$bin" "$dest$prefix/bin/s3mediafs"
ln -sfn "$prefix/bin/s3mediafs" "$dest/sbin/mount.s3mediafs"
install -m 0644 scripts/deploy/s3mediafs.service "$dest/etc/systemd/system/s3mediafs.service"
install -m 0644 scripts/deploy/s3mediafs-media.mount.example scripts/deploy/fstab.example README.md "$dest$prefix/share/doc/s3mediafs/"
if [ ! -e "$dest/etc/s3mediafs.yaml" ]; then
  install -m 0600 scripts/deploy/s3mediafs.yaml.example "$dest/etc/s3mediafs.yaml"
  echo "wrote $dest/etc/s3mediafs.yaml (mode 0600): fill in the bucket and credentials"
else
  echo "kept the existing $dest/etc/s3mediafs.yaml"
fi
install -d -m 0700 "$dest/var/cache/s3mediafs" "$dest/var/log/s3mediafs"
echo "installed s3mediafs to $dest$prefix/bin, mount helper $dest/sbin/mount.s3mediafs"
if [ -z "$dest" ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  echo "next: edit /etc/s3mediafs.yaml and the mount point in s3mediafs.service, then systemctl enable --now s3mediafs"
fi
