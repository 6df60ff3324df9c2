// Configuration: files and flags, errors that name the problem, mount -o
// options, modes, storage classes, and the shipped example configs.

package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigFileAndFlags(t *testing.T) {
	p := writeConfig(t, `
bucket: media
prefix: synapse
region_name: eu-west-1
endpoint_url: https://s3.example.org
force_path_style: true
access_key_id: AK
secret_access_key: SK
cache_dir: /srv/cache
upload_concurrency: 4
cache_max_size: 50GiB
cache_min_free: 10%
cache_max_age: 72h
dirty_max_size: 5GB
`)
	m, err := parseMountArgs([]string{"--config", p, "--upload-concurrency", "12", "--cache-min-free", "2GiB", "/mnt"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := m.cfg
	if c.Bucket != "media" || c.Prefix != "synapse" || c.RegionName != "eu-west-1" || !c.ForcePathStyle ||
		c.CacheDir != "/srv/cache" || m.mountpoint != "/mnt" {
		t.Fatalf("file values: %+v", c)
	}
	if c.UploadConcurrency != 12 {
		t.Fatalf("flag did not override the file: %d", c.UploadConcurrency)
	}
	if c.CacheMaxSize != 50<<30 || c.DirtyMaxSize != 5_000_000_000 || c.CacheMaxAge.D() != 72*time.Hour {
		t.Fatalf("sizes: %d %d %v", c.CacheMaxSize, c.DirtyMaxSize, c.CacheMaxAge)
	}
	if c.CacheMinFree != (FreeSpace{Bytes: 2 << 30}) {
		t.Fatalf("min free flag: %+v", c.CacheMinFree)
	}
	if c.StoreTimeout.D() != 30*time.Second || c.RevalidateAfter.D() != time.Minute {
		t.Fatalf("defaults lost: %+v", c)
	}
}

func TestConfigErrorsNameTheProblem(t *testing.T) {
	cases := map[string]string{
		"bucket: a\nbuckett: b\n":                                 "buckett",
		"prefix: x\n":                                             "bucket is required",
		"bucket: a\naccess_key_id: x\n":                           "given together",
		"bucket: a\nendpoint_url: s3.example.org\n":               "must start with http",
		"bucket: a\nupload_concurrency: 0\n":                      "upload_concurrency",
		"bucket: a\ncache_max_size: lots\n":                       "is not a size",
		"bucket: a\ncache_min_free: 120%\n":                       "percentage",
		"bucket: a\ncache_max_size: 1GiB\ndirty_max_size: 2GiB\n": "exceeds cache_max_size",
		"bucket: a\nstore_timeout: soon\n":                        "line 2",
		"bucket: a\nlog_level: loud\n":                            "log_level",
		"bucket: [unterminated\n":                                 "yaml",
	}
	for body, want := range cases {
		_, err := parseMountArgs([]string{"--config", writeConfig(t, body), "/mnt"}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %q: error %v, want it to mention %q", body, err, want)
		}
	}
}

func TestEmptyConfigFileSetsNothing(t *testing.T) {
	m, err := parseMountArgs([]string{"--config", writeConfig(t, ""), "--bucket", "b", "/mnt"}, io.Discard)
	if err != nil || m.cfg.Bucket != "b" || m.cfg.CacheDir != "/var/cache/s3mediafs" {
		t.Fatalf("%v %+v", err, m)
	}
}

func FuzzConfigFile(f *testing.F) {
	f.Add("bucket: a\ncache_max_size: 1GiB\ncache_min_free: 5%\n")
	f.Add("bucket: a\nprefix: synapse\nupload_concurrency: 3\n")
	f.Fuzz(func(t *testing.T, body string) {
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(body), 0o600)
		m, err := parseMountArgs([]string{"--config", p, "/mnt"}, io.Discard)
		if err == nil && m.cfg.validate() != nil {
			t.Fatal("accepted an invalid config")
		}
	})
}

func TestMountOptionsAccumulateAndMapToKeys(t *testing.T) {
	m, err := parseMountArgs([]string{"-o", "log_file=/tmp/x.log", "--bucket", "b",
		"-o", "_netdev,nofail,x-systemd.automount,defaults,allow_other,cache_max_size=2GiB,prefix=synapse", "/mnt"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.LogFile != "/tmp/x.log" || m.cfg.CacheMaxSize != 2<<30 || m.cfg.Prefix != "synapse" ||
		m.cfg.AllowOther == nil || !*m.cfg.AllowOther {
		t.Fatalf("%+v", m.cfg)
	}
	for _, bad := range []string{"ro", "nosuchkey=1", "frobnicate"} {
		if _, err := parseMountArgs([]string{"--bucket", "b", "-o", bad, "/mnt"}, io.Discard); err == nil {
			t.Errorf("-o %s accepted", bad)
		}
	}
}

// file_mode, dir_mode and umask are octal, as chmod takes them.
func TestModes(t *testing.T) {
	for _, c := range []struct {
		yaml      string
		file, dir uint32
	}{
		{"", 0o644, 0o755},
		{"umask: 027\n", 0o640, 0o750},
		{"umask: \"0o077\"\nfile_mode: 0644\n", 0o644, 0o700},
		{"file_mode: 600\ndir_mode: 0700\n", 0o600, 0o700},
	} {
		cfg := defaultConfig()
		p := filepath.Join(t.TempDir(), "c.yaml")
		os.WriteFile(p, []byte(c.yaml), 0o600)
		if err := loadConfigFile(p, &cfg); err != nil {
			t.Fatalf("%q: %v", c.yaml, err)
		}
		if f, d := cfg.modes(); f != c.file || d != c.dir {
			t.Errorf("%q: file %o dir %o, want %o %o", c.yaml, f, d, c.file, c.dir)
		}
	}
	if _, err := parseMode("0999"); err == nil {
		t.Error("0999 accepted as octal")
	}
}

// storage_classes: one class per top-level tree, checked like
// storage_class, and handed to the S3 client.
func TestStorageClassesConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	os.WriteFile(p, []byte("bucket: b\nstorage_classes:\n  remote_content: ONEZONE_IA\n  remote_thumbnail: ONEZONE_IA\n  local_thumbnails: STANDARD_IA\n"), 0o600)
	cfg := defaultConfig()
	if err := loadConfigFile(p, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	if got := s3ConfigOf(cfg).StorageClasses["remote_thumbnail"]; got != "ONEZONE_IA" {
		t.Fatalf("handed to the client: %q", got)
	}
	for _, bad := range []string{"storage_classes:\n  remote_content: GLACIER\n", "storage_classes:\n  a/b: STANDARD\n"} {
		os.WriteFile(p, []byte("bucket: b\n"+bad), 0o600)
		cfg := defaultConfig()
		if err := loadConfigFile(p, &cfg); err == nil {
			err = cfg.validate()
			if err == nil {
				t.Errorf("%q accepted", bad)
			}
		}
	}
}

// TestShippedExampleConfigsLoad: every example configuration the package
// and the container example ship is accepted as it stands.
func TestShippedExampleConfigsLoad(t *testing.T) {
	for _, p := range []string{"../../scripts/deploy/s3mediafs.yaml.example", "../../scripts/deploy/docker/s3mediafs.yaml"} {
		cfg := defaultConfig()
		if err := loadConfigFile(p, &cfg); err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := cfg.validate(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// Every duration key takes what the README shows: 0, a plain number of
// seconds, and Go's durations, from the file and from -o alike.
func TestDurationsTakeZeroSecondsAndGoForms(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"0": 0, "0s": 0, "30": 30 * time.Second, "1.5": 1500 * time.Millisecond,
		"90s": 90 * time.Second, "1m30s": 90 * time.Second, "72h": 72 * time.Hour, `"2m"`: 2 * time.Minute,
	} {
		cfg := defaultConfig()
		if err := loadConfigFile(writeConfig(t, "revalidate_after: "+in+"\ndrain_timeout: "+in+"\n"), &cfg); err != nil {
			t.Errorf("file %q: %v", in, err)
		} else if cfg.RevalidateAfter.D() != want || cfg.DrainTimeout.D() != want {
			t.Errorf("file %q: got %v, %v; want %v", in, cfg.RevalidateAfter.D(), cfg.DrainTimeout.D(), want)
		}
		if in == `"2m"` {
			continue
		}
		m, err := parseMountArgs([]string{"--bucket", "b", "-o", "revalidate_after=" + in + ",cache_max_age=" + in, "--drain-timeout", in, "/mnt"}, io.Discard)
		if err != nil {
			t.Errorf("-o %q: %v", in, err)
		} else if m.cfg.RevalidateAfter.D() != want || m.cfg.CacheMaxAge.D() != want || m.cfg.DrainTimeout.D() != want {
			t.Errorf("-o %q: got %v %v %v; want %v", in, m.cfg.RevalidateAfter.D(), m.cfg.CacheMaxAge.D(), m.cfg.DrainTimeout.D(), want)
		}
	}
	for _, bad := range []string{"soon", "1x", "NaN", "1e300"} {
		cfg := defaultConfig()
		err := loadConfigFile(writeConfig(t, "store_timeout: "+bad+"\n"), &cfg)
		if err == nil || !strings.Contains(err.Error(), "is not a duration") {
			t.Errorf("store_timeout %q: %v", bad, err)
		}
	}
}
