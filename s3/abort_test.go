// Aborting a completed multipart upload keeps the object.

package s3_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/s3mediafs/s3mediafs/s3"
)

type idJournal struct{ ids []string }

func (j *idJournal) BeginMultipart(key, id string) error       { j.ids = append(j.ids, id); return nil }
func (j *idJournal) EndMultipart(key, id string) error         { return nil }
func (j *idJournal) OpenMultiparts(func(key, id string)) error { return nil }

// TestAbortAfterCompleteKeepsTheObject: a journal entry can outlive its
// completed upload (a crash between completion and the journal update);
// aborting it at the next start must not touch the object.
func TestAbortAfterCompleteKeepsTheObject(t *testing.T) {
	j := &idJournal{}
	c, _ := journaledViaProxy(t, func(c *s3.Config) { c.MultipartThreshold, c.MultipartPartSize = 5<<20, 5<<20 }, j)
	data := bytes.Repeat([]byte("z"), 6<<20)
	if err := c.Put(context.Background(), "k", bytes.NewReader(data), int64(len(data)), nil); err != nil {
		t.Fatal(err)
	}
	for _, id := range j.ids {
		if id != "" {
			if err := c.AbortMultipart(context.Background(), "k", id); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got := get(t, c, "k"); !bytes.Equal(got, data) {
		t.Fatalf("object after aborting its completed upload: %d bytes", len(got))
	}
}
