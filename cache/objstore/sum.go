package objstore

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash"
	"hash/crc32"
	"strings"
)

// SumAlgo names a checksum algorithm, as S3 names its checksum headers.
type SumAlgo string

// The checksums a store can vouch for. CRC64NVME, which S3 also offers,
// has no implementation in Go's library and is not checked.
const (
	CRC32C SumAlgo = "crc32c"
	CRC32  SumAlgo = "crc32"
	SHA256 SumAlgo = "sha256"
	SHA1   SumAlgo = "sha1"
	MD5    SumAlgo = "md5"
)

// Sum is a checksum of a whole object: its algorithm and its value.
type Sum struct {
	Algo  SumAlgo
	Value []byte
}

// IsZero reports that no checksum is known.
func (s Sum) IsZero() bool { return s.Algo == "" }

// New returns a hash that computes a Sum of this algorithm.
func (s Sum) New() hash.Hash {
	switch s.Algo {
	case CRC32C:
		return crc32.New(castagnoli)
	case CRC32:
		return crc32.NewIEEE()
	case SHA256:
		return sha256.New()
	case SHA1:
		return sha1.New()
	case MD5:
		return md5.New()
	}
	return nil
}

// Matches reports whether h, made by New and fed the object's bytes,
// gives this sum.
func (s Sum) Matches(h hash.Hash) bool { return bytes.Equal(h.Sum(nil), s.Value) }

func (s Sum) String() string {
	if s.IsZero() {
		return "none"
	}
	return string(s.Algo) + ":" + base64.StdEncoding.EncodeToString(s.Value)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32CSum is the Sum of a CRC-32C value.
func CRC32CSum(v uint32) Sum { return Sum{Algo: CRC32C, Value: binary.BigEndian.AppendUint32(nil, v)} }

// NewCRC32C returns a CRC-32C hash (Castagnoli), the one the cache keeps.
func NewCRC32C() hash.Hash32 { return crc32.New(castagnoli) }

// SumFromHeader reads a checksum as S3 sends it (base64 of the digest) for
// algo. A composite checksum of a multipart upload ("…-3") or a value of
// the wrong length says nothing of the whole object and gives the zero
// Sum.
func SumFromHeader(algo SumAlgo, v string) Sum {
	if v == "" || strings.Contains(v, "-") {
		return Sum{}
	}
	b, err := base64.StdEncoding.DecodeString(v)
	s := Sum{Algo: algo, Value: b}
	if err != nil || s.New() == nil || len(b) != s.New().Size() {
		return Sum{}
	}
	return s
}

// SumFromETag reads an ETag that is the MD5 of the object: 32 hex digits
// in quotes. Others (a multipart upload's "…-N", an encrypted object's,
// a store's own format) give the zero Sum; the caller knows whether the
// object is encrypted, which also breaks the rule.
func SumFromETag(etag string) Sum {
	etag = strings.Trim(etag, `"`)
	b, err := hex.DecodeString(etag)
	if err != nil || len(b) != md5.Size {
		return Sum{}
	}
	return Sum{Algo: MD5, Value: b}
}
