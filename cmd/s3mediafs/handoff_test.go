// The mount helper's hand-off of options: commas, empty values, and
// secrets kept out of errors and of world-readable files.

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A mount point is a value, never options: commas in it (from fstab or
// media_store_path) set no configuration key.
func TestCommaInMountpointSetsNothing(t *testing.T) {
	cfgFile := filepath.Join(t.TempDir(), "s3mediafs.yaml")
	if err := os.WriteFile(cfgFile, []byte("bucket: b\ncache_dir: /tmp/c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mnt := "/srv/media,allow_other,metrics_address=0.0.0.0:9464,comment="
	h, err := prepareHandoff([]string{"--config", cfgFile, mnt})
	if err != nil {
		t.Fatal(err)
	}
	if h.Mountpoint != mnt {
		t.Errorf("mount point %q, want it literally", h.Mountpoint)
	}
	def := defaultConfig()
	if h.Config.MetricsAddress != def.MetricsAddress || h.Config.AllowOther != nil {
		t.Errorf("the mount point set keys: metrics_address %q, allow_other %v", h.Config.MetricsAddress, h.Config.AllowOther)
	}
	if !strings.HasPrefix(h.Config.LogFile, defaultLogDir+"/") || strings.Contains(filepath.Base(h.Config.LogFile), "/") {
		t.Errorf("log file %q", h.Config.LogFile)
	}
}

// No error repeats a secret given as an option.
func TestOptionErrorsKeepSecrets(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	for _, opts := range []string{
		"secret_access_key=" + secret + ",uid=bob",
		"uid=bob,secret_access_key=" + secret,
		secret,
		"sse_customer_key=" + secret + ",cache_max_size=lots",
		"buckett=x,session_token=" + secret,
	} {
		var cfg Config
		_, err := applyMountOptions(opts, &cfg)
		if err == nil {
			t.Fatalf("%q accepted", opts)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[4:20]) {
			t.Errorf("the error for a bad option repeats the secret: %v", err)
		}
	}
	var cfg Config
	_, err := applyMountOptions("cache_max_size=lots", &cfg)
	if err == nil || !strings.Contains(err.Error(), "cache_max_size") || !strings.Contains(err.Error(), "is not a size") {
		t.Errorf("a bad size: %v", err)
	}
}

// A configuration file holding a secret that others can read is named at
// start; a private one, or one without the secret, is not.
func TestExposedSecretFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	cfg := Config{SecretAccessKey: "s3cr3t-value"}
	open := write("open.yaml", "secret_access_key: s3cr3t-value\n", 0o644)
	private := write("private.yaml", "secret_access_key: s3cr3t-value\n", 0o600)
	plain := write("plain.yaml", "bucket: b\n", 0o644)
	got := exposedSecretFiles([]string{open, private, plain}, cfg)
	if len(got) != 1 || got[0] != open {
		t.Fatalf("exposed: %v, want only %s", got, open)
	}
}

// key= sets an empty value: metrics_address= turns metrics off.
func TestEmptyOptionValue(t *testing.T) {
	cfg := defaultConfig()
	if _, err := applyMountOptions("metrics_address=", &cfg); err != nil || cfg.MetricsAddress != "" {
		t.Fatalf("metrics_address=: %q, %v", cfg.MetricsAddress, err)
	}
}
