package cache

import (
	"errors"
	"fmt"
	"hash"
	"io"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// No byte the store sends enters the cache unchecked. A download is kept
// only if its length is the size the store announced for the object and,
// where the store or the uploader vouched for the bytes, its checksum
// matches: the CRC-32C a mount's upload carries as metadata
// (x-amz-meta-s3mediafs-crc32c) first, else the store's own full-object
// checksum (x-amz-checksum-*), else the ETag of an unencrypted
// single-part object, which is its MD5. An object that carries none of
// these (written by another tool, multipart, encrypted) is checked by its
// length alone. A download that fails its check is tried again from the
// start, verifyTries times in all, then fails with ErrStore (EIO), and
// nothing of it is kept.

// verifyTries is how many whole downloads of an object a fetch makes
// before it takes a failed check as the store's answer.
const verifyTries = 3

// errCorrupt marks bytes from the store that fail their check.
var errCorrupt = errors.New("the store's bytes fail their check")

// verifier computes, over a download's bytes, the CRC-32C the index keeps
// (and the scrub checks) and the checksum the object is checked against.
type verifier struct {
	crc  hash.Hash32
	want objstore.Sum      // zero: checked by length alone
	h    hash.Hash         // computes want; crc itself when want is CRC-32C
	meta map[string]string // the object's user metadata, as the response carried it
}

// newVerifier checks against what o, the object as the response
// described it, vouches for.
func newVerifier(o objstore.Object) *verifier {
	v := &verifier{crc: objstore.NewCRC32C(), want: o.Sum, meta: o.Meta}
	if crc, ok := crcOfMeta(o.Meta); ok {
		v.want = objstore.CRC32CSum(crc)
	}
	switch {
	case v.want.IsZero():
	case v.want.Algo == objstore.CRC32C:
		v.h = v.crc
	default:
		v.h = v.want.New()
	}
	return v
}

func (v *verifier) Write(b []byte) (int, error) {
	v.crc.Write(b)
	if v.h != nil && v.h != hash.Hash(v.crc) {
		v.h.Write(b)
	}
	return len(b), nil
}

// check reports whether the bytes written match the checksum; nil when
// there was none to check.
func (v *verifier) check() error {
	if v.h == nil || v.want.Matches(v.h) {
		return nil
	}
	return fmt.Errorf("%w: %s is %s, the bytes give %s:%x", errCorrupt, v.want.Algo, v.want, v.want.Algo, v.h.Sum(nil))
}

// crcOfFile computes the CRC-32C of the first size bytes of f.
func crcOfFile(f io.ReaderAt, size int64) (uint32, error) {
	h := objstore.NewCRC32C()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, size))
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	return h.Sum32(), err
}
