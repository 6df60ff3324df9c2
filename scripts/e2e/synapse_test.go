// The real Synapse (v1.67.0, from ../shared/tools) with its
// media_store_path on the mount: uploads of images, binaries and a PDF,
// downloads compared byte for byte, thumbnails (scale and crop,
// pre-generated and dynamic), deletes through the admin API (by media ID,
// by date, by user) that empty the bucket and the mount, and every
// survivor served again after a restart of Synapse and a remount on an
// empty cache. Synapse's log must show no ERROR.

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/s3mediafs/s3mediafs/s3"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// synapseTarball finds the Synapse source the tools folder ships.
func synapseTarball(t testing.TB) string {
	t.Helper()
	candidates := []string{os.Getenv("S3MEDIAFS_SYNAPSE_TARBALL")}
	if wd, err := os.Getwd(); err == nil {
		candidates = append(candidates, filepath.Join(wd, "../../../shared/tools/synapse-1.67.0-src.tar.gz"))
	}
	candidates = append(candidates, "/work/shared/tools/synapse-1.67.0-src.tar.gz")
	for _, c := range candidates {
		if c != "" {
			if _, err := os.Stat(c); err == nil {
				return c
			}
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("the Synapse tarball is missing (S3MEDIAFS_SYNAPSE_TARBALL)")
	}
	t.Skip("no Synapse tarball (set S3MEDIAFS_SYNAPSE_TARBALL)")
	return ""
}

// synapse is a running homeserver and an admin's access token.
type synapse struct {
	t      testing.TB
	url    string
	server string // server_name
	dir    string
	src    string
	cmd    *exec.Cmd
	token  string
	cfg    string
	// prelude is Python run before Synapse's main (synapseSetup).
	prelude string
}

// startSynapse runs the real Synapse on a loopback port with its media
// store at media (on the mount), SQLite in a temp dir, and extra YAML; it
// waits for /health and registers an admin. It is stopped, by its PID, in
// t.Cleanup.
func startSynapse(t testing.TB, media, extra string) *synapse {
	return startSynapseWith(t, media, extra, synapseSetup{})
}

// synapseSetup is what a test changes in how Synapse runs.
type synapseSetup struct {
	// prelude is Python run in Synapse's process before its main.
	prelude string
	// sameDatabaseAs makes a second homeserver process: the first one's
	// server name, signing key, SQLite database and admin, and no
	// background tasks (run_background_tasks_on names another process),
	// as a worker of the same homeserver has.
	sameDatabaseAs *synapse
}

func startSynapseWith(t testing.TB, media, extra string, setup synapseSetup) *synapse {
	t.Helper()
	tarball := synapseTarball(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3")
	}
	if err := exec.Command("/usr/bin/python3", "-c", "import twisted, nacl, signedjson, PIL, bcrypt, jsonschema, frozendict, canonicaljson, unpaddedbase64, pymacaroons, matrix_common").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Synapse's Python packages are missing (.ci/run installs them): %v", err)
		}
		t.Skipf("Synapse's Python packages are missing: %v", err)
	}
	dir := t.TempDir()
	if out, err := exec.Command("tar", "xzf", tarball, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("unpack Synapse: %v %s", err, out)
	}
	s := &synapse{t: t, server: "test.local", dir: dir, src: filepath.Join(dir, "synapse-1.67.0"), prelude: setup.prelude}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.cfg = filepath.Join(dir, "homeserver.yaml")
	db, key := filepath.Join(dir, "homeserver.db"), filepath.Join(dir, "signing.key")
	if first := setup.sameDatabaseAs; first != nil {
		first.backgroundUpdatesDone()
		db, key = filepath.Join(first.dir, "homeserver.db"), filepath.Join(first.dir, "signing.key")
		extra += "run_background_tasks_on: the_first_process\n"
	}
	logCfg := filepath.Join(dir, "log.yaml")
	os.WriteFile(logCfg, []byte(fmt.Sprintf(`version: 1
formatters:
  precise:
    format: '%%(asctime)s - %%(name)s - %%(lineno)d - %%(levelname)s - %%(request)s - %%(message)s'
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: %s
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
`, filepath.Join(dir, "homeserver.log"))), 0o600)
	os.WriteFile(s.cfg, []byte(fmt.Sprintf(`server_name: %s
listeners:
  - port: %d
    bind_addresses: ['127.0.0.1']
    type: http
    tls: false
    resources:
      - names: [client]
        compress: false
database:
  name: sqlite3
  args:
    database: %s
log_config: %s
media_store_path: %s
registration_shared_secret: "e2e-shared-secret"
report_stats: false
signing_key_path: %s
trusted_key_servers: []
suppress_key_server_warning: true
enable_metrics: false
url_preview_enabled: false
rc_media_create: {per_second: 1000, burst_count: 1000}
rc_login: {address: {per_second: 1000, burst_count: 1000}, account: {per_second: 1000, burst_count: 1000}}
rc_admin_redaction: {per_second: 1000, burst_count: 1000}
%s`, s.server, port, db, logCfg, media, key, extra)), 0o600)
	if setup.sameDatabaseAs != nil {
		s.start()
		s.token = setup.sameDatabaseAs.token
		return s
	}
	gen := exec.Command("/usr/bin/python3", "-m", "synapse.app.homeserver", "-c", s.cfg, "--generate-keys")
	gen.Dir, gen.Env = s.src, append(os.Environ(), "PYTHONPATH="+s.src)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("synapse --generate-keys: %v %s", err, out)
	}
	s.start()
	s.registerAdmin()
	return s
}

// start runs the homeserver and waits for /health; t.Cleanup stops it.
func (s *synapse) start() {
	t := s.t
	s.cmd = exec.Command("/usr/bin/python3", "-m", "synapse.app.homeserver", "-c", s.cfg)
	if s.prelude != "" {
		s.cmd = exec.Command("/usr/bin/python3", "-c", s.prelude+"\nfrom synapse.app.homeserver import main\nmain()\n", "-c", s.cfg)
	}
	s.cmd.Dir, s.cmd.Env = s.src, append(os.Environ(), "PYTHONPATH="+s.src)
	out, _ := os.Create(filepath.Join(s.dir, "stdout.log"))
	s.cmd.Stdout, s.cmd.Stderr = out, out
	err := s.cmd.Start()
	out.Close() // the child has its own descriptor
	if err != nil {
		t.Fatal(err)
	}
	cmd := s.cmd
	t.Cleanup(func() { stopProcess(cmd) })
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			b, _ := os.ReadFile(filepath.Join(s.dir, "stdout.log"))
			t.Fatalf("Synapse did not answer /health: %v\n%s", err, b)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// backgroundUpdatesDone waits until the homeserver has run all of its
// database's background updates: every homeserver process runs those it
// finds, and two on one database would run them both.
func (s *synapse) backgroundUpdatesDone() {
	s.t.Helper()
	db := filepath.Join(s.dir, "homeserver.db")
	start := time.Now()
	eventually(s.t, 3*time.Minute, "Synapse's background updates done", func() bool {
		out, err := exec.Command("/usr/bin/python3", "-c", "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM background_updates').fetchone()[0])", db).Output()
		return err == nil && strings.TrimSpace(string(out)) == "0"
	})
	s.t.Logf("Synapse's background updates took %v", time.Since(start).Round(time.Second))
}

// stop ends the homeserver by its PID and waits for it.
func (s *synapse) stop() { stopProcess(s.cmd) }

func stopProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

// registerAdmin registers an admin with the shared secret and logs in.
func (s *synapse) registerAdmin() {
	t := s.t
	var nonce struct{ Nonce string }
	s.call("GET", "/_synapse/admin/v1/register", nil, "", &nonce, 200)
	mac := hmac.New(sha1.New, []byte("e2e-shared-secret"))
	mac.Write([]byte(nonce.Nonce + "\x00admin\x00admin-password\x00admin"))
	body, _ := json.Marshal(map[string]any{"nonce": nonce.Nonce, "username": "admin", "password": "admin-password", "admin": true, "mac": hex.EncodeToString(mac.Sum(nil))})
	var reg struct {
		AccessToken string `json:"access_token"`
	}
	s.call("POST", "/_synapse/admin/v1/register", body, "application/json", &reg, 200)
	if reg.AccessToken == "" {
		t.Fatal("no access token from registration")
	}
	s.token = reg.AccessToken
}

// call makes a request with the admin's token and decodes a JSON answer
// into out (if not nil); the status must be want.
func (s *synapse) call(method, path string, body []byte, contentType string, out any, want int) []byte {
	s.t.Helper()
	b, status := s.do(method, path, body, contentType)
	if status != want {
		s.t.Fatalf("%s %s: HTTP %d, want %d: %.300s", method, path, status, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %.300s", method, path, err, b)
		}
	}
	return b
}

func (s *synapse) do(method, path string, body []byte, contentType string) ([]byte, int) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, s.url+path, bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b, resp.StatusCode
}

// upload stores data as a media and returns its ID.
func (s *synapse) upload(name, contentType string, data []byte) string {
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	s.call("POST", "/_matrix/media/v3/upload?filename="+name, data, contentType, &out, 200)
	id, ok := strings.CutPrefix(out.ContentURI, "mxc://"+s.server+"/")
	if !ok {
		s.t.Fatalf("upload: content_uri %q", out.ContentURI)
	}
	return id
}

// download returns a media's bytes and the status.
func (s *synapse) download(id string) ([]byte, int) {
	return s.do("GET", "/_matrix/media/v3/download/"+s.server+"/"+id, nil, "")
}

// logErrors returns the ERROR lines of Synapse's log, each with the
// traceback under it, and any 500 answer.
func (s *synapse) logErrors() []string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "homeserver.log"))
	var bad []string
	inError := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.Contains(line, " - ERROR - ") || (strings.Contains(line, "synapse.http.server") && strings.Contains(line, " 500 ")):
			bad, inError = append(bad, line), true
		case inError && line != "" && !strings.HasPrefix(line, "20"):
			bad[len(bad)-1] += "\n" + line // the traceback
		default:
			inError = false
		}
	}
	return bad
}

// noErrorsLogged fails t if any homeserver's log shows an ERROR or a 500.
func noErrorsLogged(t testing.TB, homeservers ...*synapse) {
	t.Helper()
	for _, s := range homeservers {
		if bad := s.logErrors(); len(bad) > 0 {
			t.Fatalf("Synapse logged errors:\n%s", strings.Join(bad, "\n"))
		}
	}
}

func pngOf(w, h int, seed byte) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{byte(x) ^ seed, byte(y), seed, 255})
		}
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func jpegOf(w, h int, seed byte) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{byte(x * 3), byte(y) ^ seed, byte(x + y), 255})
		}
	}
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 85})
	return b.Bytes()
}

// A tiny valid PDF.
const pdfDoc = "%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj 2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj 3 0 obj<</Type/Page/MediaBox[0 0 3 3]>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n"

// mediaDir is where Synapse keeps a local media's file, below the store.
func mediaDir(id string) string { return filepath.Join("local_content", id[:2], id[2:4], id[4:]) }

func TestRealSynapseOnTheMount(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	synapseWorkload(t, client, srv, bucket, "")
}

// The same with the store 20 ms away: every request to it waits 20 ms in
// the test proxy, so that the remount on an empty cache serves every
// survivor, and its thumbnail, across that distance.
func TestRealSynapseStoreFarAway(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	proxy := s3test.NewProxy(t, srv.Endpoint)
	proxy.SetFaults(s3test.Faults{Delay: 20 * time.Millisecond}, 1)
	synapseWorkload(t, client, srv, bucket, proxy.URL)
	if n := len(proxy.Requests()); n == 0 {
		t.Fatal("no request went through the proxy")
	}
}

// synapseWorkload is the real Synapse's media workload on a mount over
// bucket, through endpoint (the store's own when empty).
func synapseWorkload(t *testing.T, client *s3.Client, srv s3test.Server, bucket, endpoint string) {
	cfg := config(t, srv, endpoint, bucket, t.TempDir(), "log_level: info\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	syn := startSynapse(t, mnt, "dynamic_thumbnails: true\nmax_upload_size: 50M\n")

	media := map[string][]byte{}
	kinds := map[string]string{}
	add := func(name, ct string, data []byte) string {
		id := syn.upload(name, ct, data)
		media[id], kinds[id] = data, ct
		return id
	}
	var images []string
	for i, wh := range [][2]int{{40, 30}, {640, 480}, {1200, 900}} {
		images = append(images, add(fmt.Sprintf("p%d.png", i), "image/png", pngOf(wh[0], wh[1], byte(i))))
		images = append(images, add(fmt.Sprintf("j%d.jpg", i), "image/jpeg", jpegOf(wh[0], wh[1], byte(i))))
	}
	small := add("small.bin", "application/octet-stream", payload(7_000, 1))
	large := add("large.bin", "application/octet-stream", payload(5<<20+123, 2))
	pdf := add("doc.pdf", "application/pdf", []byte(pdfDoc))

	for id, want := range media {
		got, status := syn.download(id)
		if status != 200 || !bytes.Equal(got, want) {
			t.Fatalf("download %s (%s): HTTP %d, %d bytes of %d", id, kinds[id], status, len(got), len(want))
		}
	}
	// Thumbnails: pre-generated sizes and dynamic ones, scale and crop.
	for _, id := range images {
		for _, q := range []string{"width=32&height=32&method=scale", "width=96&height=96&method=crop", "width=77&height=51&method=scale", "width=133&height=61&method=crop"} {
			b, status := syn.do("GET", "/_matrix/media/v3/thumbnail/"+syn.server+"/"+id+"?"+q, nil, "")
			if status != 200 || len(b) == 0 {
				t.Fatalf("thumbnail %s %s: HTTP %d, %d bytes", id, q, status, len(b))
			}
			if _, _, err := image.Decode(bytes.NewReader(b)); err != nil {
				t.Fatalf("thumbnail %s %s is not an image: %v", id, q, err)
			}
		}
	}
	flushed(t, cfg, 60*time.Second)
	for id, want := range media {
		got, ok := object(t, client, filepath.ToSlash(mediaDir(id)))
		if !ok || !bytes.Equal(got, want) {
			t.Fatalf("%s is not in the bucket intact", id)
		}
	}

	// Delete by media ID: 404, the object leaves the bucket, the
	// directories leave the mount.
	gone := []string{small, images[0]}
	for _, id := range gone {
		syn.call("DELETE", "/_synapse/admin/v1/media/"+syn.server+"/"+id, nil, "", nil, 200)
		delete(media, id)
	}
	flushed(t, cfg, 60*time.Second)
	for _, id := range gone {
		if _, status := syn.download(id); status != 404 {
			t.Errorf("download of deleted %s: HTTP %d, want 404", id, status)
		}
		if _, ok := object(t, client, filepath.ToSlash(mediaDir(id))); ok {
			t.Errorf("deleted %s is still in the bucket", id)
		}
		if _, err := os.Stat(filepath.Join(mnt, filepath.Dir(mediaDir(id)), filepath.Base(mediaDir(id)))); !os.IsNotExist(err) {
			t.Errorf("deleted %s is still on the mount: %v", id, err)
		}
		if _, err := os.Stat(filepath.Join(mnt, "local_thumbnails", id[:2], id[2:4], id[4:])); !os.IsNotExist(err) {
			t.Errorf("deleted %s's thumbnails are still on the mount: %v", id, err)
		}
	}

	// Restart Synapse, and the daemon on an empty cache: every survivor
	// is served again.
	syn.stop()
	d.stop()
	cfg2 := config(t, srv, endpoint, bucket, t.TempDir(), "log_level: info\n")
	d = start(t, cfg2, mnt)
	syn.start()
	for id, want := range media {
		got, status := syn.download(id)
		if status != 200 || !bytes.Equal(got, want) {
			t.Fatalf("after the restarts, %s: HTTP %d, %d bytes of %d", id, status, len(got), len(want))
		}
	}
	b, status := syn.do("GET", "/_matrix/media/v3/thumbnail/"+syn.server+"/"+images[2]+"?width=50&height=50&method=crop", nil, "")
	if status != 200 || len(b) == 0 {
		t.Fatalf("a thumbnail from an empty cache: HTTP %d", status)
	}
	_, _ = large, pdf

	// Delete by date, then by user: Synapse's own purges empty the bucket.
	syn.call("POST", fmt.Sprintf("/_synapse/admin/v1/media/%s/delete?before_ts=%d", syn.server, time.Now().Add(time.Hour).UnixMilli()), []byte("{}"), "application/json", nil, 200)
	flushed(t, cfg2, 60*time.Second)
	for id := range media {
		if _, status := syn.download(id); status != 404 {
			t.Errorf("after a delete by date, %s: HTTP %d, want 404", id, status)
		}
		if _, ok := object(t, client, filepath.ToSlash(mediaDir(id))); ok {
			t.Errorf("after a delete by date, %s is still in the bucket", id)
		}
	}
	byUser := syn.upload("mine.bin", "application/octet-stream", payload(9_000, 3))
	syn.call("DELETE", "/_synapse/admin/v1/users/@admin:"+syn.server+"/media", nil, "", nil, 200)
	flushed(t, cfg2, 60*time.Second)
	if _, status := syn.download(byUser); status != 404 {
		t.Errorf("after a delete by user: HTTP %d, want 404", status)
	}
	if _, ok := object(t, client, filepath.ToSlash(mediaDir(byUser))); ok {
		t.Error("after a delete by user, the media is still in the bucket")
	}
	noErrorsLogged(t, syn)
	syn.stop()
	d.terminate(t)
}

// statusOf is the daemon's status, as `s3mediafs status --json` gives it.
func statusOf(t *testing.T, cfg string) map[string]any {
	t.Helper()
	out, code := cli(t, "status", "--json", "--socket", socketOf(t, cfg))
	var st map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("status: %s", out)
	}
	return st
}

// gone checks that a media Synapse removed is gone from the bucket and,
// with its thumbnails, from the mount.
func gone(t *testing.T, client *s3.Client, mnt, id string) {
	t.Helper()
	if _, ok := object(t, client, filepath.ToSlash(mediaDir(id))); ok {
		t.Errorf("removed %s is still in the bucket", id)
	}
	if _, err := os.Stat(filepath.Join(mnt, mediaDir(id))); !os.IsNotExist(err) {
		t.Errorf("removed %s is still on the mount: %v", id, err)
	}
	if _, err := os.Stat(filepath.Join(mnt, "local_thumbnails", id[:2], id[2:4], id[4:])); !os.IsNotExist(err) {
		t.Errorf("removed %s's thumbnails are still on the mount: %v", id, err)
	}
}

// Synapse's own purge job (media_retention, local_media_lifetime) removes
// what it should through the mount: the media past its lifetime leaves
// the bucket and the mount, and a protected media stays. The job runs
// hourly in Synapse; the prelude makes it run every second, nothing else.
func TestRealSynapseMediaRetention(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "log_level: info\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	syn := startSynapseWith(t, mnt, "media_retention:\n  local_media_lifetime: 10s\n", synapseSetup{
		prelude: "import synapse.rest.media.v1.media_repository as m\nm.MEDIA_RETENTION_CHECK_PERIOD_MS = 1000",
	})
	kept := pngOf(300, 200, 9)
	keep := syn.upload("keep.png", "image/png", kept)
	syn.call("POST", "/_synapse/admin/v1/media/protect/"+keep, []byte("{}"), "application/json", nil, 200)
	var doomed []string
	for i := range 4 {
		doomed = append(doomed, syn.upload(fmt.Sprintf("d%d.png", i), "image/png", pngOf(200+i*50, 150, byte(i))))
	}
	doomed = append(doomed, syn.upload("d.bin", "application/octet-stream", payload(2<<20, 5)))
	flushed(t, cfg, time.Minute)
	for _, id := range doomed {
		if _, ok := object(t, client, filepath.ToSlash(mediaDir(id))); !ok {
			t.Fatalf("%s never reached the bucket", id)
		}
	}
	eventually(t, 2*time.Minute, "Synapse's retention job purged the old media", func() bool {
		for _, id := range doomed {
			if _, status := syn.download(id); status != 404 {
				return false
			}
		}
		return true
	})
	flushed(t, cfg, time.Minute)
	for _, id := range doomed {
		gone(t, client, mnt, id)
	}
	if got, status := syn.download(keep); status != 200 || !bytes.Equal(got, kept) {
		t.Errorf("the protected media: HTTP %d, %d bytes of %d", status, len(got), len(kept))
	}
	if got, ok := object(t, client, filepath.ToSlash(mediaDir(keep))); !ok || !bytes.Equal(got, kept) {
		t.Error("the protected media left the bucket")
	}
	b, _ := os.ReadFile(filepath.Join(syn.dir, "homeserver.log"))
	if !strings.Contains(string(b), "Purging local media last accessed before") {
		t.Error("Synapse's log does not show its retention job")
	}
	noErrorsLogged(t, syn)
	syn.stop()
	d.terminate(t)
}

// A cache smaller than the working set: Synapse uploads and serves three
// times more than the cache holds, so files are evicted and fetched again
// while it serves, downloads and thumbnails alike.
func TestRealSynapseCacheSmallerThanWorkingSet(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	cfg := config(t, srv, "", bucket, t.TempDir(), "log_level: info\ncache_max_size: 8MiB\n")
	mnt := t.TempDir()
	d := start(t, cfg, mnt)
	syn := startSynapse(t, mnt, "dynamic_thumbnails: true\n")
	media := map[string][]byte{}
	var ids, images []string
	for i := range 40 {
		data, name, ct := payload(500_000+i*1000, 100+i), fmt.Sprintf("b%d.bin", i), "application/octet-stream"
		if i%4 == 0 {
			data, name, ct = jpegOf(800, 600, byte(i)), fmt.Sprintf("j%d.jpg", i), "image/jpeg"
		}
		id := syn.upload(name, ct, data)
		media[id] = data
		ids = append(ids, id)
		if ct == "image/jpeg" {
			images = append(images, id)
		}
	}
	flushed(t, cfg, 2*time.Minute)
	for round := range 2 {
		for i := range ids {
			id := ids[(i*7+round*3)%len(ids)]
			got, status := syn.download(id)
			if status != 200 || !bytes.Equal(got, media[id]) {
				t.Fatalf("round %d, %s: HTTP %d, %d bytes of %d", round, id, status, len(got), len(media[id]))
			}
		}
		for _, id := range images {
			b, status := syn.do("GET", fmt.Sprintf("/_matrix/media/v3/thumbnail/%s/%s?width=%d&height=%d&method=scale", syn.server, id, 50+round*13, 40+round*7), nil, "")
			if status != 200 {
				t.Fatalf("round %d, thumbnail of %s: HTTP %d", round, id, status)
			}
			if _, _, err := image.Decode(bytes.NewReader(b)); err != nil {
				t.Fatalf("round %d, thumbnail of %s: %v", round, id, err)
			}
		}
	}
	st := statusOf(t, cfg)
	if ev, miss := st["evictions"].(float64), st["misses"].(float64); ev == 0 || miss == 0 {
		t.Fatalf("%v evictions and %v misses: the working set fitted the cache", ev, miss)
	}
	t.Logf("status after two rounds: %v evictions, %v misses, %v hits", st["evictions"], st["misses"], st["hits"])
	flushed(t, cfg, time.Minute)
	for _, id := range ids {
		if got, ok := object(t, client, filepath.ToSlash(mediaDir(id))); !ok || !bytes.Equal(got, media[id]) {
			t.Fatalf("%s is not in the bucket intact", id)
		}
	}
	noErrorsLogged(t, syn)
	syn.stop()
	d.terminate(t)
}

// Two homeserver processes, each on a mount of its own (its own cache) of
// one bucket, as two Synapse workers on two hosts: media uploaded through
// one is downloaded, and thumbnailed, through the other, both ways, and a
// delete through one empties the bucket and the other's answers.
//
// Synapse's workers need Redis and txredisapi, which Debian 12 does not
// package, so the second process is a second homeserver on the first
// one's database (SQLite), with its background tasks off, as a worker's
// are: what the mounts see is the same.
func TestRealSynapseTwoMounts(t *testing.T) {
	client, srv, bucket := s3test.Bucket(t, "synapse/")
	// As the README has hosts that share media directories set it: a
	// name missing from a directory this host made is looked for in the
	// store after negative_cache_ttl, not after a minute.
	const shared = "log_level: info\nmade_dir_trust: 0s\n"
	cfgA := config(t, srv, "", bucket, t.TempDir(), shared)
	cfgB := config(t, srv, "", bucket, t.TempDir(), shared)
	mntA, mntB := t.TempDir(), t.TempDir()
	dA, dB := start(t, cfgA, mntA), start(t, cfgB, mntB)
	// The second process waits for the first's background updates;
	// without their pauses they take seconds, not half a minute.
	synA := startSynapse(t, mntA, "dynamic_thumbnails: true\nbackground_updates:\n  sleep_enabled: false\n")
	synB := startSynapseWith(t, mntB, "dynamic_thumbnails: true\n", synapseSetup{sameDatabaseAs: synA})

	type sent struct {
		id   string
		data []byte
	}
	uploadAll := func(through *synapse, seed int) []sent {
		var out []sent
		for i := range 6 {
			data, name, ct := payload(30_000+i*5000, seed+i), fmt.Sprintf("f%d.bin", i), "application/octet-stream"
			if i%2 == 0 {
				data, name, ct = pngOf(320+i*10, 240, byte(seed+i)), fmt.Sprintf("p%d.png", i), "image/png"
			}
			out = append(out, sent{through.upload(name, ct, data), data})
		}
		return out
	}
	check := func(what string, through *synapse, media []sent) {
		for _, m := range media {
			// Another host's file is found within negative_cache_ttl
			// (2 s) of this host's last look.
			var got []byte
			var status int
			deadline := time.Now().Add(20 * time.Second)
			for {
				got, status = through.download(m.id)
				if status != 404 || time.Now().After(deadline) {
					break
				}
				time.Sleep(250 * time.Millisecond)
			}
			if status != 200 || !bytes.Equal(got, m.data) {
				t.Fatalf("%s, %s: HTTP %d, %d bytes of %d", what, m.id, status, len(got), len(m.data))
			}
			b, status := through.do("GET", "/_matrix/media/v3/thumbnail/"+through.server+"/"+m.id+"?width=32&height=32&method=crop", nil, "")
			if bytes.HasPrefix(m.data, []byte("\x89PNG")) && (status != 200 || len(b) == 0) {
				t.Fatalf("%s, thumbnail of %s: HTTP %d", what, m.id, status)
			}
		}
	}
	fromA := uploadAll(synA, 10)
	// A write reaches another host once it is in the store: the
	// upload is asynchronous (store_synchronous: true waits for it).
	flushed(t, cfgA, time.Minute)
	check("uploaded through A, downloaded through B", synB, fromA)
	fromB := uploadAll(synB, 50)
	flushed(t, cfgB, time.Minute)
	check("uploaded through B, downloaded through A", synA, fromB)

	for _, m := range []sent{fromA[0], fromB[1]} {
		synA.call("DELETE", "/_synapse/admin/v1/media/"+synA.server+"/"+m.id, nil, "", nil, 200)
	}
	flushed(t, cfgA, time.Minute)
	for _, m := range []sent{fromA[0], fromB[1]} {
		gone(t, client, mntA, m.id)
		if _, status := synB.download(m.id); status != 404 {
			t.Errorf("deleted through A, %s through B: HTTP %d, want 404", m.id, status)
		}
	}
	noErrorsLogged(t, synA, synB)
	synB.stop()
	synA.stop()
	dB.terminate(t)
	dA.terminate(t)
}
