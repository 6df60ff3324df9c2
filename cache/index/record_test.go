// Record encoding: round trips, and a fuzzer that any decoded record is
// safe (its data name stays inside the cache) and re-encodes the same.

package index

import (
	"strings"
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []Record{
		{Dir: true, Ino: 7, MTime: 1, Mode: 0o755},
		{Dir: true, Ino: 8, MTime: 1, MadeHere: true},
		{State: Dirty, Ino: 9, Size: 123, MTime: 2, Gen: 3, Data: "00ff", InStore: true},
		{State: Remote, Ino: 10, Size: 1 << 40, StoreMTime: 5},
		{State: Local, Ino: 11, Size: 1, Data: "ab"},
		{State: Clean, Ino: 12, Size: 9, Data: "cd", CRC32C: 0xe3069283, HasCRC: true},
		{State: Remote, Ino: 13, Size: 9, CRC32C: 0, HasCRC: true},
	} {
		got, err := Decode(r.Encode())
		if err != nil || got != r {
			t.Fatalf("%+v -> %+v, %v", r, got, err)
		}
	}
}

// A version 2 record (before checksums) still decodes, with no checksum.
func TestVersion2RecordDecodes(t *testing.T) {
	r := Record{State: Clean, Ino: 12, Size: 9, Data: "cd"}
	b := r.Encode()
	b[0] = 2
	got, err := Decode(b)
	if err != nil || got != r {
		t.Fatalf("%+v, %v", got, err)
	}
	b[1] |= flagCRC // a version 2 record has no checksum to read
	if _, err := Decode(append(b, 1, 2, 3, 4)); err == nil {
		t.Fatal("a version 2 record with trailing bytes decoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add((&Record{State: Clean, Ino: 3, Size: 10, Data: "0123abcd"}).Encode())
	f.Add((&Record{Dir: true, Ino: 2}).Encode())
	f.Add([]byte{1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must name a data file inside the cache and
		// survive a round trip.
		if strings.ContainsAny(r.Data, "/\\.\x00") {
			t.Fatalf("data name %q escapes", r.Data)
		}
		again, err := Decode(r.Encode())
		if err != nil || again != r {
			t.Fatalf("round trip of %+v: %+v %v", r, again, err)
		}
	})
}
