// s3mediafs reconcile, run as an operator runs it, against a real store,
// a real SQLite file and a real PostgreSQL server, with a live mount
// holding a file not yet uploaded.

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/fs/mounttest"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cmd/s3mediafs/reconcile/synapsetest"
	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// reconcileJSON is the part of reconcile --json the tests read.
type reconcileJSON struct {
	Orphans  struct{ Count, Bytes int64 } `json:"orphans"`
	InGrace  struct{ Count int64 }        `json:"orphans_in_grace"`
	Missing  struct{ Count int64 }        `json:"missing"`
	Missing_ []string                     `json:"missing_examples"`
	Local    struct{ Count int64 }        `json:"local_only"`
	Matched  struct{ Count int64 }        `json:"matched"`
	Foreign  struct{ Count int64 }        `json:"foreign"`
	Deleted  struct{ Count int64 }        `json:"deleted"`
	DryRun   bool                         `json:"dry_run"`
	Cost     float64                      `json:"orphans_cost_per_month"`
}

func reconcileCmd(t *testing.T, args ...string) (reconcileJSON, string) {
	t.Helper()
	out, code := cli(t, append([]string{"reconcile"}, args...)...)
	if code != 0 {
		t.Fatalf("reconcile %v: exit %d\n%s", args, code, out)
	}
	var r reconcileJSON
	if strings.Contains(strings.Join(args, " "), "--json") {
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("reconcile --json: %v\n%s", err, out)
		}
	}
	return r, out
}

func putAll(t *testing.T, c *s3.Client, keys []string, size int) {
	t.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	errs := make(chan error, len(keys))
	for _, k := range keys {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- c.Put(context.Background(), k, bytes.NewReader(payload(size, len(k))), int64(size), nil)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// providerRows fills a Synapse database with the media the bucket keeps.
func providerRows(db *synapsetest.DB) {
	db.Local("knownLocalMedia000000001", "")
	db.LocalThumbnail("knownLocalMedia000000001", 32, 32, "image/png", "crop")
	db.Remote("matrix.org", "remoteID", "knownRemoteFsId")
	db.RemoteThumbnail("matrix.org", "remoteID", "knownRemoteFsId", 96, 96, "image/jpeg", "scale")
	db.Local("2025-03-01_previewMedia", "https://example.org/page")
	db.Local("missingEverywhere000000", "")  // nowhere: missing
	db.Local("localOnlyNotUploaded0000", "") // in the mount's cache only
}

var providerKnown = []string{
	"local_content/kn/ow/nLocalMedia000000001",
	"local_thumbnails/kn/ow/nLocalMedia000000001/32-32-image-png-crop",
	"remote_content/matrix.org/kn/ow/nRemoteFsId",
	"remote_thumbnail/matrix.org/kn/ow/nRemoteFsId/96-96-image-jpeg-scale",
	"url_cache/2025-03-01/previewMedia",
}

func TestReconcileProviderBucket(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	var orphans []string
	for i := range 25 {
		orphans = append(orphans, fmt.Sprintf("local_content/pu/rg/ed%018d", i))
	}
	orphans = append(orphans, "remote_content/example.net/pu/rg/edRemote", "remote_thumbnail/example.net/pu/rg/edRemote/32-32-image-png-crop")
	putAll(t, client, append(append([]string{"not-synapse/backup.tar"}, providerKnown...), orphans...), 1000)
	seeded := time.Now()

	dbs := map[string]*synapsetest.DB{"sqlite": synapsetest.SQLite(t, synapsetest.Current)}
	if os.Getenv("S3MEDIAFS_TEST_POSTGRES") != "" || os.Getenv("CI") != "" {
		dbs["postgres"] = synapsetest.Postgres(t, synapsetest.Current)
	}
	for _, db := range dbs {
		providerRows(db)
	}

	// The mount runs; one file written through it cannot be uploaded.
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFail(func(r *http.Request) int {
		if r.Method == http.MethodPut && strings.Contains(r.URL.Path, "localOnlyNotUploaded") || strings.Contains(r.URL.Path, "lo/ca/lOnly") {
			return http.StatusServiceUnavailable
		}
		return 0
	})
	cfg := config(t, srv, proxy.URL, bucket, t.TempDir(), "")
	mnt := t.TempDir()
	start(t, cfg, mnt)
	mounttest.MustWriteLikeSynapse(t, filepath.Join(mnt, "local_content/lo/ca/lOnlyNotUploaded0000"), payload(777, 1))

	// An upload whose row is not committed yet, inside the grace period:
	// put again before each run below, as the runs take their time.
	time.Sleep(time.Until(seeded.Add(6 * time.Second)))

	for name, db := range dbs {
		t.Run(name, func(t *testing.T) {
			hs := db.Homeserver(mnt)
			putAll(t, client, []string{"local_content/up/lo/adInProgress"}, 10) // young again
			r, _ := reconcileCmd(t, "--synapse-config", hs, "--config", cfg, "--json", "--min-age", "4s")
			if r.Orphans.Count != int64(len(orphans)) || r.Orphans.Bytes != int64(1000*len(orphans)) || !r.DryRun || r.Cost <= 0 {
				t.Errorf("orphans %+v dry run %v cost %v", r.Orphans, r.DryRun, r.Cost)
			}
			if r.Missing.Count != 1 || len(r.Missing_) != 1 || r.Missing_[0] != "local_content/mi/ss/ingEverywhere000000" {
				t.Errorf("missing %+v %q", r.Missing, r.Missing_)
			}
			if r.Local.Count != 1 || r.InGrace.Count != 1 || r.Foreign.Count != 1 || r.Matched.Count != int64(len(providerKnown)) {
				t.Errorf("local only %d, in grace %d, foreign %d, matched %d", r.Local.Count, r.InGrace.Count, r.Foreign.Count, r.Matched.Count)
			}
		})
	}

	// Reviewed; now delete, through the SQLite form. The upload in
	// progress is written again first: on a loaded machine the runs above
	// may have taken longer than its grace.
	db := dbs["sqlite"]
	hs := db.Homeserver(mnt)
	putAll(t, client, []string{"local_content/up/lo/adInProgress"}, 10)
	_, text := reconcileCmd(t, "--synapse-config", hs, "--config", cfg, "--min-age", "4s")
	if !strings.Contains(text, "dry run: nothing deleted") || !strings.Contains(text, fmt.Sprintf("orphans:    %d objects", len(orphans))) {
		t.Fatalf("text report:\n%s", text)
	}
	logPath := filepath.Join(t.TempDir(), "deleted.tsv")
	putAll(t, client, []string{"local_content/up/lo/adInProgress"}, 10) // still in progress
	r, _ := reconcileCmd(t, "--synapse-config", hs, "--config", cfg, "--json", "--min-age", "4s", "--delete-orphans", "--deleted-log", logPath)
	if r.Deleted.Count != int64(len(orphans)) {
		t.Fatalf("deleted %d, want %d", r.Deleted.Count, len(orphans))
	}
	for _, k := range orphans {
		if _, ok := object(t, client, k); ok {
			t.Errorf("orphan %s still in the bucket", k)
		}
	}
	for _, k := range append([]string{"not-synapse/backup.tar", "local_content/up/lo/adInProgress"}, providerKnown...) {
		if _, ok := object(t, client, k); !ok {
			t.Errorf("%s was deleted", k)
		}
	}
	if logged := loggedKeys(t, logPath); len(logged) != len(orphans) {
		t.Errorf("the log names %d keys, want %d", len(logged), len(orphans))
	}
	if r, _ := reconcileCmd(t, "--synapse-config", hs, "--config", cfg, "--json", "--min-age", "4s"); r.Orphans.Count != 0 {
		t.Errorf("orphans after the delete: %d", r.Orphans.Count)
	}
}

func loggedKeys(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys := map[string]bool{}
	for sc := bufio.NewScanner(f); sc.Scan(); {
		// The log has the bucket's keys: the prefix, then the key.
		if fields := strings.Split(sc.Text(), "\t"); len(fields) == 3 && strings.HasPrefix(fields[1], "synapse/") {
			keys[strings.TrimPrefix(fields[1], "synapse/")] = true
		}
	}
	return keys
}

// A delete killed midway and run again removes every orphan and nothing
// else, and the log names every key it removed.
func TestReconcileKilledAndResumed(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	db := synapsetest.SQLite(t, synapsetest.Current)
	if os.Getenv("S3MEDIAFS_TEST_POSTGRES") != "" || os.Getenv("CI") != "" {
		db = synapsetest.Postgres(t, synapsetest.Current)
	}
	var orphans, known []string
	for i := range 3000 {
		orphans = append(orphans, fmt.Sprintf("local_content/or/ph/an%016d", i))
	}
	for i := range 50 {
		id := fmt.Sprintf("kn%022d", i)
		db.Local(id, "")
		known = append(known, "local_content/"+id[:2]+"/"+id[2:4]+"/"+id[4:])
	}
	putAll(t, client, append(orphans, known...), 10)
	cfg := config(t, srv, "", bucket, t.TempDir(), "")
	hs := db.Homeserver(t.TempDir())
	logPath := filepath.Join(t.TempDir(), "deleted.tsv")
	args := []string{"reconcile", "--synapse-config", hs, "--config", cfg, "--min-age", "0s", "--delete-orphans",
		"--deleted-log", logPath, "--concurrency", "1", "--json"}

	cmd := exec.Command(binary, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("the killed run said:\n%s", out.String())
		}
	})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 60*time.Second, "the first deletes", func() bool {
		return len(loggedKeys(t, logPath)) > 0
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	left := 0
	client.List(context.Background(), "local_content/or/", true, func(objstore.Entry) bool { left++; return true })
	if left == 0 || left == len(orphans) {
		t.Logf("the kill landed at %d of %d orphans left", left, len(orphans))
	}

	r, _ := reconcileCmd(t, args[1:]...)
	// The killed run's scratch directory went with the resumed run.
	if left, _ := filepath.Glob(filepath.Join(os.TempDir(), "s3mediafs-reconcile-*")); len(left) > 0 {
		t.Errorf("scratch left after the resumed run: %v", left)
	}
	// A DeleteObjects the kill interrupted may still complete in the
	// store after the count above.
	if r.Orphans.Count > int64(left) || r.Deleted.Count != r.Orphans.Count {
		t.Errorf("the resumed run found %d orphans and deleted %d; %d were left", r.Orphans.Count, r.Deleted.Count, left)
	}
	logged := loggedKeys(t, logPath)
	for _, k := range orphans {
		if _, ok := object(t, client, k); ok {
			t.Fatalf("orphan %s survived the resumed run", k)
		}
		if !logged[k] {
			t.Errorf("orphan %s deleted but not in the log", k)
		}
	}
	for _, k := range known {
		if _, ok := object(t, client, k); !ok || logged[k] {
			t.Errorf("%s, which Synapse knows, was deleted or logged", k)
		}
	}
}
