package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// mountArgs is what the mount command's command line says.
type mountArgs struct {
	cfg        Config
	mountpoint string
	embedded   string // --embedded-s3 DIR
	debugFUSE  bool
	daemon     bool // detach once the mount serves
	readyFD    int  // report readiness to a waiting parent on this descriptor
	handedOff  bool // the configuration came from a daemonizing parent
	// files are the configuration files read (--config, --synapse-config),
	// checked for secrets others can read.
	files []string
}

// parseMountArgs reads the config file, then lets flags override it.
func parseMountArgs(args []string, stderr io.Writer) (*mountArgs, error) {
	fl := flag.NewFlagSet("mount", flag.ContinueOnError)
	fl.SetOutput(stderr)
	var (
		configPath  = fl.String("config", "", "YAML configuration `file`")
		synapsePath = fl.String("synapse-config", os.Getenv("SYNAPSE_CONFIG_PATH"),
			"Synapse's homeserver.yaml: media_store_path and the s3_storage_provider block (default $SYNAPSE_CONFIG_PATH)")
		m    = &mountArgs{}
		over Config
	)
	fl.StringVar(&m.embedded, "embedded-s3", "", "quickstart: serve an embedded S3 store keeping objects in `DIR` (not the cloud)")
	fl.BoolVar(&m.debugFUSE, "debug-fuse", false, "log every FUSE request")
	fl.BoolVar(&m.daemon, "daemon", false, "return once the mount serves and keep serving in the background")
	fl.IntVar(&m.readyFD, "ready-fd", 0, "write \"ok\" (or \"error: …\") on this `descriptor` once the mount serves, for supervisors and tests")
	handoffFrom := fl.Int("handoff-fd", 0, "(internal) read the resolved configuration from this descriptor")
	mountOpts := new(string)
	fl.Func("o", "mount options: key=value config keys, allow_other, and fstab options that are ignored (repeatable)", func(s string) error {
		*mountOpts = joinOpts(*mountOpts, s)
		return nil
	})
	overrideFlags(fl, &over)
	if err := fl.Parse(args); err != nil {
		return nil, err
	}
	if *handoffFrom > 0 {
		return m, m.readHandoff(*handoffFrom)
	}
	if fl.NArg() > 1 {
		return nil, errors.New("mount takes one MOUNTPOINT")
	}
	cfg, mediaStore, err := resolveConfig(*configPath, *synapsePath, *mountOpts)
	if err != nil {
		return nil, err
	}
	for _, f := range []string{*configPath, *synapsePath} {
		if f != "" {
			m.files = append(m.files, f)
		}
	}
	m.cfg, m.mountpoint = cfg, mediaStore
	if fl.NArg() == 1 {
		m.mountpoint = fl.Arg(0)
	}
	if m.mountpoint == "" {
		return nil, errors.New("mount needs a MOUNTPOINT (or --synapse-config with media_store_path)")
	}
	applyOverrides(fl, over, &m.cfg)
	if err := m.useEmbedded(); err != nil {
		return nil, err
	}
	return m, m.cfg.validate()
}

// overrideFlags declares the flags that override configuration keys.
func overrideFlags(fl *flag.FlagSet, over *Config) {
	fl.StringVar(&over.Bucket, "bucket", "", "bucket name")
	fl.StringVar(&over.Prefix, "prefix", "", "key prefix, used verbatim")
	fl.StringVar(&over.RegionName, "region", "", "region name")
	fl.StringVar(&over.EndpointURL, "endpoint-url", "", "S3-compatible endpoint URL")
	fl.BoolVar(&over.ForcePathStyle, "force-path-style", false, "use path-style bucket addressing")
	fl.StringVar(&over.CacheDir, "cache-dir", "", "cache directory (index and data)")
	fl.IntVar(&over.UploadConcurrency, "upload-concurrency", 0, "parallel uploads")
	fl.Func("cache-max-size", "bound on local data (e.g. 50GiB)", func(s string) error {
		v, err := parseBytes(s)
		over.CacheMaxSize = ByteSize(v)
		return err
	})
	fl.Func("cache-min-free", "free space to keep on the cache filesystem (e.g. 10GiB or 5%)", func(s string) error {
		v, err := parseFreeSpace(s)
		over.CacheMinFree = v
		return err
	})
	fl.Func("drain-timeout", "how long a stop waits for owed uploads (90s, or seconds)", func(s string) error {
		v, err := parseDuration(s)
		over.DrainTimeout = Duration(v)
		return err
	})
	fl.StringVar(&over.LogLevel, "log-level", "", "debug, info, warn or error")
	fl.StringVar(&over.LogFormat, "log-format", "", "text or json")
}

// applyOverrides sets in cfg the keys whose flags were given.
func applyOverrides(fl *flag.FlagSet, over Config, cfg *Config) {
	fl.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "bucket":
			cfg.Bucket = over.Bucket
		case "prefix":
			cfg.Prefix = over.Prefix
		case "region":
			cfg.RegionName = over.RegionName
		case "endpoint-url":
			cfg.EndpointURL = over.EndpointURL
		case "force-path-style":
			cfg.ForcePathStyle = over.ForcePathStyle
		case "cache-dir":
			cfg.CacheDir = over.CacheDir
		case "upload-concurrency":
			cfg.UploadConcurrency = over.UploadConcurrency
		case "cache-max-size":
			cfg.CacheMaxSize = over.CacheMaxSize
		case "cache-min-free":
			cfg.CacheMinFree = over.CacheMinFree
		case "drain-timeout":
			cfg.DrainTimeout = over.DrainTimeout
		case "log-level":
			cfg.LogLevel = over.LogLevel
		case "log-format":
			cfg.LogFormat = over.LogFormat
		}
	})
}

// useEmbedded points the configuration at the embedded quickstart store.
func (m *mountArgs) useEmbedded() error {
	if m.embedded == "" {
		return nil
	}
	if m.cfg.EndpointURL != "" {
		return errors.New("--embedded-s3 and endpoint_url exclude each other")
	}
	if m.cfg.Bucket == "" {
		m.cfg.Bucket = embeddedBucket
	}
	m.cfg.AccessKeyID, m.cfg.SecretAccessKey, m.cfg.SessionToken = embeddedKey, embeddedSecret, ""
	m.cfg.ForcePathStyle = true
	m.cfg.EndpointURL = "http://embedded" // replaced once the server listens
	return nil
}

// readHandoff takes the mount a daemonizing parent resolved (see handoff).
func (m *mountArgs) readHandoff(fd int) error {
	f := os.NewFile(uintptr(fd), "handoff")
	defer f.Close()
	var h handoff
	if err := json.NewDecoder(f).Decode(&h); err != nil {
		return fmt.Errorf("read the configuration handed over: %w", err)
	}
	m.cfg, m.mountpoint, m.embedded, m.debugFUSE, m.files = h.Config, h.Mountpoint, h.Embedded, h.DebugFUSE, h.Files
	m.handedOff = true
	return m.cfg.validate()
}

// withoutFlag drops a boolean flag from an argument list.
func withoutFlag(args []string, name string) []string {
	out := make([]string, 0, len(args))
	for _, a := range args {
		if a != name && a != "-"+strings.TrimLeft(name, "-") && a != name+"=true" {
			out = append(out, a)
		}
	}
	return out
}
