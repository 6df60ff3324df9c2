package index

import "encoding/binary"

// Every Badger key the cache writes is built here, from one byte of
// prefix that names its kind; the table of them all, with their values, is
// in the cache package's documentation (cache/doc.go, "Badger keys").

// Index keys. Entries are keyed by parent and name so that one prefix scan
// lists a directory's direct children and nothing below them.
const (
	EntryPrefix   = 'n' // n<parent>\x00<name> -> record
	PendingPrefix = 'p' // p<path> -> "" : an upload or delete is owed
)

func EntryKey(p string) []byte {
	parent, name := SplitPath(p)
	k := make([]byte, 0, len(p)+2)
	k = append(k, EntryPrefix)
	k = append(k, parent...)
	k = append(k, 0)
	return append(k, name...)
}

func ChildrenPrefix(dir string) []byte {
	k := make([]byte, 0, len(dir)+2)
	k = append(k, EntryPrefix)
	k = append(k, dir...)
	return append(k, 0)
}

func PendingKey(p string) []byte {
	return append([]byte{PendingPrefix}, p...)
}

// AcctKey holds the accounting: Acct.Encode of the local bytes, dirty bytes and dirty files.
var AcctKey = []byte("s:acct")

const (
	LRUPrefix    = 'l' // l<be64 access time><path> -> "" : clean files by last access
	AccessPrefix = 'a' // a<path> -> be64 access time, for finding a file's lru key
)

func LRUKey(at int64, p string) []byte {
	k := make([]byte, 0, 9+len(p))
	k = append(k, LRUPrefix)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, p...)
}

func AccessKey(p string) []byte { return append([]byte{AccessPrefix}, p...) }

// HiddenPrefix marks keys deleted here but kept in the store because
// delete_from_s3 is off: h<path> -> "". The mount hides such objects.
const HiddenPrefix = 'h'

func HiddenKey(p string) []byte { return append([]byte{HiddenPrefix}, p...) }

// HiddenTreePrefix marks a directory removed here while the objects below
// it stay in the store (delete_from_s3 off): t<path> -> "". Everything
// below it is hidden by this one key, so that what a listing or a lookup
// costs does not grow with the files ever removed.
const HiddenTreePrefix = 't'

func HiddenTreeKey(p string) []byte { return append([]byte{HiddenTreePrefix}, p...) }

// MoveSourcePrefix marks a key whose object a rename still has to move
// away: M<old key> -> path of the record moving it. The old key also has
// a pending mark, so lookups and listings treat it as gone.
const MoveSourcePrefix = 'M'

func MoveSourceKey(p string) []byte { return append([]byte{MoveSourcePrefix}, p...) }

// The multipart journal, kept for the S3 client (s3.MultipartJournal):
// m<key>\x00<upload id> -> "" while a multipart upload is open, and
// m<key>\x00 (no ID) while one is being created. An entry found at start
// belongs to an upload a crash cut off; the client aborts it.
const multipartPrefix = 'm'

func multipartKey(key, uploadID string) []byte {
	k := make([]byte, 0, len(key)+len(uploadID)+2)
	k = append(k, multipartPrefix)
	k = append(k, key...)
	k = append(k, 0)
	return append(k, uploadID...)
}

// RenameIntentPrefix marks a tree move under way: R<old>\x00<new> -> "".
const RenameIntentPrefix = 'R'

func RenameIntentKey(oldp, newp string) []byte {
	k := append([]byte{RenameIntentPrefix}, oldp...)
	k = append(k, 0)
	return append(k, newp...)
}

// InodePrefix finds a record from its inode number: i<be64 ino> -> path.
// A daemon that takes over a live mount (fs.Adopt) is asked about the
// inode numbers the kernel learnt from the one before it.
const InodePrefix = 'i'

func InodeKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{InodePrefix}, ino)
}

// SchemaKey holds the index's format version. The first release wrote
// none; every release since opens the indexes of the ones before it and
// upgrades them in place, and refuses an index newer than itself rather
// than misread it. cache/testdata holds an index of each older format.
var SchemaKey = []byte("s:schema")

// runningKey is present while a daemon has the index open; finding it at
// open means the last run did not stop cleanly.
var runningKey = []byte("s:running")

// RootKey holds the mount root's attributes: the root has no record of
// its own (it has no key in the store). Its value: uvarint mode
// (rootModeSet marks it set), uvarint uid+1, uvarint gid+1 (0: unset),
// then varint mtime and ctime (absent before times were kept).
var RootKey = []byte("s:root")

// inoKey holds Badger's sequence of inode numbers.
var inoKey = []byte("s:ino")
