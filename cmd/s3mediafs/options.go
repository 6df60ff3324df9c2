package main

import (
	"bytes"
	"fmt"
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
	doc := &yaml.Node{Kind: yaml.MappingNode}
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
			return "", fmt.Errorf("unknown mount option %q (config keys are given as key=value)", o)
		}
		doc.Content = append(doc.Content,
			&yaml.Node{Kind: yaml.ScalarNode, Value: key},
			&yaml.Node{Kind: yaml.ScalarNode, Value: value})
	}
	if len(doc.Content) == 0 {
		return synapseConfig, nil
	}
	var buf bytes.Buffer
	if err := yaml.NewEncoder(&buf).Encode(doc); err != nil {
		return "", err
	}
	dec := yaml.NewDecoder(&buf)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return "", fmt.Errorf("mount options %q: %s", opts, strings.ReplaceAll(err.Error(), "field ", "unknown option "))
	}
	return synapseConfig, nil
}
