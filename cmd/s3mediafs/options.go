package main

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ignoredMountOptions are accepted from fstab and mount(8) and mean
// nothing to the daemon: they are for mount(8) and systemd.
var ignoredMountOptions = map[string]bool{
	"_netdev": true, "nofail": true, "auto": true, "noauto": true, "defaults": true,
	"rw": true, "user": true, "users": true, "nouser": true, "owner": true, "group": true,
	"exec": true, "noexec": true, "suid": true, "nosuid": true, "dev": true, "nodev": true,
	"async": true, "atime": true, "noatime": true, "relatime": true, "nodiratime": true,
}

// applyMountOptions applies a comma-separated -o list to cfg. key=value
// sets the config key of that name (same names as the YAML file, checked
// the same way); allow_other is the flag FUSE users know.
func applyMountOptions(opts string, cfg *Config) (synapseConfig string, err error) {
	for _, o := range strings.Split(opts, ",") {
		o = strings.TrimSpace(o)
		key, value, hasValue := strings.Cut(o, "=")
		switch {
		case o == "":
			continue
		case ignoredMountOptions[o], strings.HasPrefix(o, "x-"), strings.HasPrefix(o, "comment="):
			continue
		case o == "allow_other":
			yes := true
			cfg.AllowOther = &yes
			continue
		case o == "nonempty":
			// FUSE's name for it.
			cfg.AllowNonEmptyMountpoint = true
			continue
		case o == "ro":
			return "", fmt.Errorf("option ro: s3mediafs does not mount read-only")
		case key == "synapse_config" && hasValue:
			synapseConfig = value
			continue
		case !hasValue:
			return "", fmt.Errorf("unknown mount option %q (config keys are given as key=value)", redactWord(o))
		}
		if err := applyOption(key, value, cfg); err != nil {
			return "", err
		}
	}
	return synapseConfig, nil
}

// secretKeys are the configuration keys whose values are never repeated
// in a message.
var secretKeys = map[string]bool{"secret_access_key": true, "session_token": true, "sse_customer_key": true, "access_key_id": true}

// applyOption sets one config key from a -o key=value, checked as the
// YAML file's keys are. The value is a YAML scalar of its own, so no
// value can set another key.
func applyOption(key, value string, cfg *Config) error {
	v := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	if value == "" {
		// key= sets the empty string (metrics_address= turns metrics
		// off), where a bare empty scalar would be YAML's null.
		v.Style = yaml.DoubleQuotedStyle
	}
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: key}, v}}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(doc); err != nil {
		return err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		if strings.Contains(err.Error(), "not found in type") {
			return fmt.Errorf("unknown mount option %q", key)
		}
		if secretKeys[key] {
			return fmt.Errorf("mount option %s: not a valid value (not shown: it is a secret)", key)
		}
		msg := yamlLinePrefix.ReplaceAllString(err.Error(), "")
		return fmt.Errorf("mount option %s: %s", key, strings.TrimSpace(msg))
	}
	return nil
}

// exposedSecretFiles returns the files among files that hold one of the
// configuration's secrets and that users other than the owner may read.
func exposedSecretFiles(files []string, cfg Config) []string {
	var out []string
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm()&0o077 == 0 {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range []string{cfg.SecretAccessKey, cfg.SessionToken, cfg.SSECustomerKey} {
			if s != "" && bytes.Contains(b, []byte(s)) {
				out = append(out, f)
				break
			}
		}
	}
	return out
}

// yamlLinePrefix is what the YAML decoder puts before its message, which
// means nothing for a -o option.
var yamlLinePrefix = regexp.MustCompile(`^yaml: (unmarshal errors:\s*)?(line \d+: )+`)

// redactWord shows a word given as an option without a value only if it
// is short enough not to be a pasted secret.
func redactWord(o string) string {
	if len(o) > 24 {
		return o[:4] + "…"
	}
	return o
}
