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

	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// synapseTarball finds the Synapse source the tools folder ships.
func synapseTarball(t *testing.T) string {
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
	t      *testing.T
	url    string
	server string // server_name
	dir    string
	src    string
	cmd    *exec.Cmd
	token  string
	cfg    string
}

// startSynapse runs the real Synapse on a loopback port with its media
// store at media (on the mount), SQLite in a temp dir, and extra YAML; it
// waits for /health and registers an admin. It is stopped, by its PID, in
// t.Cleanup.
func startSynapse(t *testing.T, media, extra string) *synapse {
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
	s := &synapse{t: t, server: "test.local", dir: dir, src: filepath.Join(dir, "synapse-1.67.0")}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s.url = fmt.Sprintf("http://127.0.0.1:%d", port)
	s.cfg = filepath.Join(dir, "homeserver.yaml")
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
%s`, s.server, port, filepath.Join(dir, "homeserver.db"), logCfg, media, filepath.Join(dir, "signing.key"), extra)), 0o600)
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

// logErrors returns the ERROR lines of Synapse's log, and any 500 answer.
func (s *synapse) logErrors() []string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "homeserver.log"))
	var bad []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, " - ERROR - ") || (strings.Contains(line, "synapse.http.server") && strings.Contains(line, " 500 ")) {
			bad = append(bad, line)
		}
	}
	return bad
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
	cfg := config(t, srv, "", bucket, t.TempDir(), "log_level: info\n")
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
	cfg2 := config(t, srv, "", bucket, t.TempDir(), "log_level: info\n")
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
	if bad := syn.logErrors(); len(bad) > 0 {
		t.Fatalf("Synapse logged errors:\n%s", strings.Join(bad, "\n"))
	}
	syn.stop()
	d.terminate(t)
}
