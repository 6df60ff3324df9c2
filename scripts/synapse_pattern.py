#!/usr/bin/env python3
"""Does to a media store what Synapse does, with Synapse's own calls.

Usage: synapse_pattern.py MEDIA_STORE
Prints, as its last line, the sorted paths of the files it left behind.
"""
import os
import random
import shutil
import sys


def write_media(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:  # the final name: no temp file, no rename
        for off in range(0, len(data), 16 * 1024):
            f.write(data[off:off + 16 * 1024])
    if os.path.getsize(path) != len(data):
        raise SystemExit(f"getsize({rel}) = {os.path.getsize(path)}, want {len(data)}")
    with open(path, "rb") as f:
        if f.read() != data:
            raise SystemExit(f"re-read of {rel} differs")


def remove_media(root, rel):
    """Synapse's purge: remove the file, then rmdir up while empty."""
    path = os.path.join(root, rel)
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    d = os.path.dirname(path)
    while d != root:
        try:
            os.rmdir(d)
        except OSError:
            break  # ENOTEMPTY: stop climbing
        d = os.path.dirname(d)


def main():
    root = sys.argv[1]
    rnd = random.Random(42)
    left = []
    for i in range(12):
        media_id = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(24))
        rel = f"local_content/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}"
        data = rnd.randbytes(rnd.choice([2_000, 40_000, 200_000]))
        write_media(root, rel, data)
        thumb = f"local_thumbnails/{media_id[:2]}/{media_id[2:4]}/{media_id[4:]}/32-32-image-png-crop"
        write_media(root, thumb, rnd.randbytes(3_000))
        # Pillow-style random reads with seek.
        with open(os.path.join(root, rel), "rb") as f:
            for _ in range(5):
                off = rnd.randrange(len(data))
                f.seek(off)
                if f.read(100) != data[off:off + 100]:
                    raise SystemExit(f"seek/read of {rel} differs")
        if not (os.path.isfile(os.path.join(root, rel)) and os.path.exists(os.path.join(root, thumb))):
            raise SystemExit(f"{rel} does not look like a file")
        if i % 3 == 0:
            remove_media(root, rel)
            shutil.rmtree(os.path.join(root, os.path.dirname(thumb)))
        else:
            left += [rel, thumb]
    for rel in left:
        os.stat(os.path.join(root, rel))
    print(" ".join(sorted(left)))


if __name__ == "__main__":
    main()
