// Reading homeserver.yaml: the old provider's block, overrides, the
// environment, anchors, and bad files.

package main

import (
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestHomeserverYAMLProviderBlock(t *testing.T) {
	m, err := parseMountArgs([]string{"--synapse-config", "testdata/homeserver.yaml"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := m.cfg
	want := Config{
		Bucket: "synapse-media", RegionName: "eu-central-1", EndpointURL: "https://s3.eu-central-1.example.net",
		AccessKeyID: "AKIAEXAMPLEKEY", SecretAccessKey: "example-secret-key", SessionToken: "example-session-token",
		Prefix: "synapse", StorageClass: "STANDARD_IA", SSECustomerKey: "0123456789abcdef0123456789abcdef",
		SSECustomerAlgo: "AES256", RequestChecksumCalculation: "when_required", ResponseChecksumValidation: "when_required",
	}
	got := Config{
		Bucket: c.Bucket, RegionName: c.RegionName, EndpointURL: c.EndpointURL,
		AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken,
		Prefix: c.Prefix, StorageClass: c.StorageClass, SSECustomerKey: c.SSECustomerKey,
		SSECustomerAlgo: c.SSECustomerAlgo, RequestChecksumCalculation: c.RequestChecksumCalculation,
		ResponseChecksumValidation: c.ResponseChecksumValidation,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("provider keys:\n got %+v\nwant %+v", got, want)
	}
	if c.UploadConcurrency != 40 || !c.StoreLocal || !c.StoreRemote || !c.StoreSynchronous {
		t.Fatalf("threadpool_size and wrapper keys: %+v", c)
	}
	if m.mountpoint != "/var/lib/matrix-synapse/media" {
		t.Fatalf("mount point from media_store_path: %q", m.mountpoint)
	}
	lo := c.localOnly()
	if lo == nil || !lo("url_cache/x") || lo("local_content/ab/cd/x") || lo("remote_content/s/ab/cd/x") {
		t.Fatal("local-only trees wrong")
	}
}

func TestOwnConfigOverridesHomeserver(t *testing.T) {
	own := writeConfig(t, "bucket: other\nupload_concurrency: 4\ncache_dir: /srv/c\n")
	m, err := parseMountArgs([]string{"--synapse-config", "testdata/homeserver.yaml", "--config", own, "/mnt/x"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.Bucket != "other" || m.cfg.UploadConcurrency != 4 || m.mountpoint != "/mnt/x" || m.cfg.Prefix != "synapse" {
		t.Fatalf("%+v %q", m.cfg, m.mountpoint)
	}
}

func TestSynapseConfigFromEnvironment(t *testing.T) {
	t.Setenv("SYNAPSE_CONFIG_PATH", "testdata/homeserver.yaml")
	m, err := parseMountArgs(nil, io.Discard)
	if err != nil || m.cfg.Bucket != "synapse-media" {
		t.Fatalf("%v %+v", err, m)
	}
}

func TestBadHomeserverYAML(t *testing.T) {
	block := func(s string) string {
		return "media_store_path: /m\nmedia_storage_providers:\n- module: s3_storage_provider.S3StorageProviderBackend\n" + s
	}
	cases := map[string]string{
		"media_store_path: /m\n": "no media_storage_providers entry",
		block("  store_local: true\n  config:\n    bucket: b\n    bukcet: c\n"):                                                                      "bukcet",
		block("  config:\n    bucket: b\n"):                                                                                                          "both off",
		block("  store_local: true\n  config:\n    bucket: b\n    storage_class: DEEP_ARCHIVE\n"):                                                    "storage_class",
		block("  store_local: true\n  config:\n    bucket: b\n    request_checksum_calculation: sometimes\n"):                                        "request_checksum_calculation",
		block("  store_local: true\n  config:\n    bucket: b\n    sse_customer_key: short\n"):                                                        "32 bytes",
		block("  store_local: true\n  config:\n    bucket: b\n") + "- module: s3_storage_provider.S3StorageProviderBackend\n  config: {bucket: c}\n": "2 entries",
		"media_storage_providers:\n- module: s3_storage_provider.S3StorageProviderBackend\n  store_local: true\n  config: {bucket: b}\n":             "media_store_path",
	}
	for body, want := range cases {
		_, err := parseMountArgs([]string{"--synapse-config", writeConfig(t, body)}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("homeserver %q: %v, want it to mention %q", body, err, want)
		}
	}
}

func FuzzHomeserverYAML(f *testing.F) {
	f.Add("media_store_path: /m\nmedia_storage_providers:\n- module: s3_storage_provider.S3StorageProviderBackend\n  store_local: true\n  config: {bucket: b}\n")
	f.Fuzz(func(t *testing.T, body string) {
		var cfg Config = defaultConfig()
		p := writeConfig(t, body)
		if mp, err := loadSynapseConfig(p, &cfg); err == nil && mp == "" {
			t.Fatal("accepted a homeserver.yaml without media_store_path")
		}
	})
}

// Anchors, aliases and merge keys in homeserver.yaml, which Synapse's
// loader takes, work in the provider block; an unknown key that a merge
// brings in is still an error that names it.
func TestHomeserverYAMLAnchors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml, wantErr string
	}{
		{"merge key", `
media_store_path: /var/lib/synapse/media
x-s3: &base
  bucket: anchored-bucket
  region_name: eu-west-1
media_storage_providers:
- module: s3_storage_provider.S3StorageProviderBackend
  store_local: true
  store_remote: true
  config:
    <<: *base
    prefix: "synapse/"
`, ""},
		{"alias", `
media_store_path: /var/lib/synapse/media
x-s3: &s3
  bucket: anchored-bucket
  region_name: eu-west-1
  prefix: "synapse/"
media_storage_providers:
- module: s3_storage_provider.S3StorageProviderBackend
  store_local: true
  store_remote: true
  config: *s3
`, ""},
		{"unknown key through a merge", `
media_store_path: /var/lib/synapse/media
x-s3: &base
  bucket: anchored-bucket
  buckett: typo
media_storage_providers:
- module: s3_storage_provider.S3StorageProviderBackend
  store_local: true
  config:
    <<: *base
`, "buckett"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".yaml")
			if err := os.WriteFile(p, []byte(tc.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			var cfg Config
			store, err := loadSynapseConfig(p, &cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if store != "/var/lib/synapse/media" || cfg.Bucket != "anchored-bucket" || cfg.RegionName != "eu-west-1" || cfg.Prefix != "synapse/" {
				t.Fatalf("read %q and %+v", store, cfg)
			}
		})
	}
}

// reconcile, status and flush load the configuration as mount does: the
// provider block of homeserver.yaml, then --config over it; a homeserver
// already moved off the provider gives media_store_path alone.
func TestEverySubcommandMergesConfigurationLikeMount(t *testing.T) {
	own := writeConfig(t, "cache_dir: /srv/own-cache\nforce_path_style: true\ncontrol_socket: /run/own.sock\n")
	hs := writeConfig(t, "media_store_path: /srv/media\ndatabase:\n  name: sqlite3\n  args: {database: /srv/hs.db}\n"+
		"media_storage_providers:\n- module: s3_storage_provider.S3StorageProviderBackend\n  store_local: true\n  config: {bucket: from-provider}\n")
	m, err := parseMountArgs([]string{"--synapse-config", hs, "--config", own}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f := reconcileFlags{synapsePath: hs, configPath: own}
	cfg, mediaStore, _, err := reconcileConfig(&f)
	if err != nil {
		t.Fatalf("reconcile with both files: %v", err)
	}
	if cfg.Bucket != "from-provider" || cfg.CacheDir != "/srv/own-cache" || !cfg.ForcePathStyle || mediaStore != "/srv/media" {
		t.Fatalf("reconcile merged %+v (media %q)", cfg, mediaStore)
	}
	if !reflect.DeepEqual(cfg, m.cfg) || mediaStore != m.mountpoint {
		t.Fatalf("reconcile and mount disagree:\n%+v\n%+v", cfg, m.cfg)
	}

	moved := writeConfig(t, "media_store_path: /srv/media\n")
	if _, err := parseMountArgs([]string{"--synapse-config", moved}, io.Discard); err == nil || !strings.Contains(err.Error(), "no media_storage_providers entry") {
		t.Fatalf("a homeserver.yaml alone without the block: %v", err)
	}
	withBucket := writeConfig(t, "bucket: mine\n")
	m, err = parseMountArgs([]string{"--synapse-config", moved, "--config", withBucket}, io.Discard)
	if err != nil || m.cfg.Bucket != "mine" || m.mountpoint != "/srv/media" {
		t.Fatalf("a moved homeserver.yaml with --config: %v %+v %q", err, m.cfg, m.mountpoint)
	}

	for _, args := range [][]string{{"--config", own}, {"--synapse-config", hs, "--config", own}} {
		socket, _, _, err := parseControlArgs("status", args, io.Discard)
		if err != nil || socket != "/run/own.sock" {
			t.Errorf("status %q: %q %v", args, socket, err)
		}
	}
	socket, _, _, err := parseControlArgs("flush", []string{"--synapse-config", moved}, io.Discard)
	if err != nil || socket != socketFor("/srv/media") {
		t.Errorf("flush --synapse-config: %q %v", socket, err)
	}
}
