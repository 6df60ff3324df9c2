package cache

import (
	"testing"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, r := range []record{
		{Dir: true, Ino: 7, MTime: 1, Mode: 0o755},
		{Dir: true, Ino: 8, MTime: 1, MadeHere: true},
		{State: Dirty, Ino: 9, Size: 123, MTime: 2, Gen: 3, Data: "00ff", InStore: true},
		{State: Remote, Ino: 10, Size: 1 << 40, StoreMTime: 5},
		{State: Local, Ino: 11, Size: 1, Data: "ab"},
	} {
		got, err := decodeRecord(r.encode())
		if err != nil || got != r {
			t.Fatalf("%+v -> %+v, %v", r, got, err)
		}
	}
}

func FuzzDecodeRecord(f *testing.F) {
	f.Add((&record{State: Clean, Ino: 3, Size: 10, Data: "0123abcd"}).encode())
	f.Add((&record{Dir: true, Ino: 2}).encode())
	f.Add([]byte{1, 0, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeRecord(b)
		if err != nil {
			return
		}
		// Whatever decodes must name a data file inside the cache and
		// survive a round trip.
		if err := validPath("x/" + r.Data + "/y"); r.Data != "" && err != nil {
			t.Fatalf("data name %q escapes", r.Data)
		}
		again, err := decodeRecord(r.encode())
		if err != nil || again != r {
			t.Fatalf("round trip of %+v: %+v %v", r, again, err)
		}
	})
}

func FuzzValidPath(f *testing.F) {
	for _, s := range []string{"local_content/ab/cd/x", "../x", "a//b", "", "a/./b", "url_cache/2026-11-25/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if validPath(p) != nil {
			return
		}
		// An accepted path has no empty, "." or ".." component, so it
		// cannot leave the prefix or the mount.
		for _, part := range splitAll(p) {
			if part == "" || part == "." || part == ".." {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

func splitAll(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}
