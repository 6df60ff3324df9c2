package index

import "encoding/binary"

// Every Badger key the cache writes is built here, from one byte of
// prefix that names its kind (a record's own key, EntryKey, beside the
// record in record.go); the table of them all, with their values, is
// in the cache package's documentation (cache/doc.go, "Badger keys").

// Index keys. Entries are keyed by parent and name so that one prefix scan
// lists a directory's direct children and nothing below them.
const (
	entryPrefix   = 'n' // n<parent>\x00<name> -> record
	pendingPrefix = 'p' // p<path> -> "" : an upload or delete is owed
)

// PendingKey marks work owed on p.
func PendingKey(p string) []byte {
	return append([]byte{pendingPrefix}, p...)
}

// AcctKey holds the accounting: Acct.Encode of the local bytes, dirty bytes and dirty files.
var AcctKey = []byte("s:acct")

const (
	lruPrefix    = 'l' // l<be64 access time><path> -> "" : clean files by last access
	accessPrefix = 'a' // a<path> -> be64 access time, for finding a file's lru key
)

func LRUKey(at int64, p string) []byte {
	k := make([]byte, 0, 9+len(p))
	k = append(k, lruPrefix)
	k = binary.BigEndian.AppendUint64(k, uint64(at))
	return append(k, p...)
}

func AccessKey(p string) []byte { return append([]byte{accessPrefix}, p...) }

// hiddenPrefix marks keys deleted here but kept in the store because
// delete_from_s3 is off: h<path> -> "". The mount hides such objects.
const hiddenPrefix = 'h'

func HiddenKey(p string) []byte { return append([]byte{hiddenPrefix}, p...) }

// hiddenTreePrefix marks a directory removed here while the objects below
// it stay in the store (delete_from_s3 off): t<path> -> "". Everything
// below it is hidden by this one key, so that what a listing or a lookup
// costs does not grow with the files ever removed.
const hiddenTreePrefix = 't'

func HiddenTreeKey(p string) []byte { return append([]byte{hiddenTreePrefix}, p...) }

// moveSourcePrefix marks a key whose object a rename still has to move
// away: M<old key> -> path of the record moving it. The old key also has
// a pending mark, so lookups and listings treat it as gone.
const moveSourcePrefix = 'M'

func MoveSourceKey(p string) []byte { return append([]byte{moveSourcePrefix}, p...) }

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

// renameIntentPrefix marks a tree move under way: R<old>\x00<new> -> "".
const renameIntentPrefix = 'R'

func RenameIntentKey(oldp, newp string) []byte {
	k := append([]byte{renameIntentPrefix}, oldp...)
	k = append(k, 0)
	return append(k, newp...)
}

// inodePrefix finds a record from its inode number: i<be64 ino> -> path.
// A daemon that takes over a live mount (fs.Adopt) is asked about the
// inode numbers the kernel learnt from the one before it.
const inodePrefix = 'i'

func InodeKey(ino uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{inodePrefix}, ino)
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

// BelowPrefix is the key prefix of everything below dir under key kind pk.
func BelowPrefix(pk byte, dir string) []byte {
	if dir == "" {
		return []byte{pk}
	}
	return append(append([]byte{pk}, dir...), '/')
}
