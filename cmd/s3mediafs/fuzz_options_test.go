// Fuzzers of mount -o options and of the mount helper's arguments.

package main

import (
	"strings"
	"testing"
)

// FuzzMountOptions: any -o string is parsed without a panic, and an error
// never repeats the value given for a secret key.
func FuzzMountOptions(f *testing.F) {
	for _, s := range []string{
		"allow_other,uid=1000,cache_max_size=10GiB",
		"secret_access_key=abcdefghijklmnop,uid=bob",
		"nonempty,metrics_address=,x-systemd.requires=network.target",
		"synapse_config=/etc/matrix-synapse/homeserver.yaml,comment=x",
		"session_token=tok3n,,=,a=b=c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, opts string) {
		var cfg Config
		_, err := applyMountOptions(opts, &cfg)
		if err == nil {
			return
		}
		for _, o := range strings.Split(opts, ",") {
			key, value, ok := strings.Cut(strings.TrimSpace(o), "=")
			if ok && secretKeys[key] && len(value) >= 8 && strings.Contains(err.Error(), value) {
				t.Fatalf("the error repeats the %s given: %v", key, err)
			}
		}
	})
}

// FuzzHelperArgs: mount(8)'s call of the helper is parsed without a
// panic, and the mount point reaches the mount command as one positional
// argument after "--", never inside the options.
func FuzzHelperArgs(f *testing.F) {
	f.Add("/etc/s3mediafs.yaml", "/srv/media,allow_other,metrics_address=0.0.0.0:9464", "rw,_netdev")
	f.Add("none", "-o", "bucket=b")
	f.Add("s3mediafs", "/mnt/with space", "")
	f.Fuzz(func(t *testing.T, source, mountpoint, opts string) {
		args := []string{source, mountpoint}
		if opts != "" {
			args = append(args, "-o", opts)
		}
		out, _, err := parseHelperArgs(args)
		if err != nil {
			return
		}
		if n := len(out); n < 2 || out[n-2] != "--" || out[n-1] != mountpoint {
			t.Fatalf("mount point %q became %q", mountpoint, out)
		}
	})
}
