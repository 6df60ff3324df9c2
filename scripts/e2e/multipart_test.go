// A multipart upload killed midway leaves no parts in the bucket.

package e2e

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// TestMultipartKilledMidUploadLeavesNothing: SIGKILL during a multipart
// upload leaves an unfinished upload in the bucket; the next start aborts
// it from the index's journal and uploads the file again.
func TestMultipartKilledMidUploadLeavesNothing(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	hold := make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(hold) }) }
	defer release()
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut && r.URL.Query().Has("partNumber") {
			<-hold // parts hang until the daemon is dead
			return http.StatusServiceUnavailable
		}
		return 0
	})
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "multipart_threshold: 5MiB\nmultipart_chunksize: 5MiB\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	data := payload(12<<20+12345, 4)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "remote_content/example.org/aa/bb/video"), data)
	eventually(t, 20*time.Second, "a part upload in flight", func() bool {
		for _, r := range proxy.Requests() {
			if r.Op() == "UploadPart" {
				return true
			}
		}
		return false
	})
	d.kill()
	open, err := client.MultipartUploads(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 {
		t.Fatalf("unfinished uploads after SIGKILL: %v, want the one cut off", open)
	}

	release()
	proxy.SetFail(nil)
	proxy.Reset()
	d2 := start(t, cfg, mnt)
	eventually(t, 60*time.Second, "the file in S3", func() bool {
		got, ok := object(t, client, "remote_content/example.org/aa/bb/video")
		return ok && bytes.Equal(got, data)
	})
	eventually(t, 20*time.Second, "no unfinished upload", func() bool {
		open, err := client.MultipartUploads(context.Background())
		return err == nil && len(open) == 0
	})
	aborted := false
	for _, r := range proxy.Requests() {
		aborted = aborted || r.Op() == "AbortMultipartUpload"
	}
	if !aborted {
		t.Fatal("the orphaned upload was not aborted")
	}
	d2.terminate(t)
}
