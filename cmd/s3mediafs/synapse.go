package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// providerModule is the media storage provider s3mediafs replaces.
const providerModule = "s3_storage_provider.S3StorageProviderBackend"

// homeserver is the part of Synapse's homeserver.yaml we read; the rest
// of the file is Synapse's business and is ignored.
type homeserver struct {
	MediaStorePath string `yaml:"media_store_path"`
	Providers      []struct {
		Module           string    `yaml:"module"`
		StoreLocal       *bool     `yaml:"store_local"`
		StoreRemote      *bool     `yaml:"store_remote"`
		StoreSynchronous *bool     `yaml:"store_synchronous"`
		Config           yaml.Node `yaml:"config"`
	} `yaml:"media_storage_providers"`
}

// providerConfig is the provider's config block: every key the module
// accepts, and no other (an unknown key is an error that names it).
type providerConfig struct {
	Bucket                     string `yaml:"bucket"`
	RegionName                 string `yaml:"region_name"`
	EndpointURL                string `yaml:"endpoint_url"`
	AccessKeyID                string `yaml:"access_key_id"`
	SecretAccessKey            string `yaml:"secret_access_key"`
	SessionToken               string `yaml:"session_token"`
	Prefix                     string `yaml:"prefix"`
	StorageClass               string `yaml:"storage_class"`
	SSECustomerKey             string `yaml:"sse_customer_key"`
	SSECustomerAlgo            string `yaml:"sse_customer_algo"`
	ThreadpoolSize             int    `yaml:"threadpool_size"`
	RequestChecksumCalculation string `yaml:"request_checksum_calculation"`
	ResponseChecksumValidation string `yaml:"response_checksum_validation"`
}

// loadSynapseConfig applies the provider block of a homeserver.yaml to cfg
// and returns media_store_path. Synapse's own defaults apply to the
// wrapper keys: store_local, store_remote and store_synchronous are off
// unless the block turns them on.
func loadSynapseConfig(path string, cfg *Config) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("synapse config: %w", err)
	}
	var hs homeserver
	if err := yaml.Unmarshal(b, &hs); err != nil {
		return "", fmt.Errorf("synapse config %s: %w", path, err)
	}
	var found []int
	for i, p := range hs.Providers {
		if p.Module == providerModule {
			found = append(found, i)
		}
	}
	switch len(found) {
	case 0:
		if hs.MediaStorePath == "" {
			return "", errors.New("synapse config " + path + ": media_store_path is not set")
		}
		return hs.MediaStorePath, fmt.Errorf("synapse config %s: %w with module %s", path, errNoProvider, providerModule)
	case 1:
	default:
		return "", fmt.Errorf("synapse config %s: %d entries with module %s; s3mediafs mounts one bucket", path, len(found), providerModule)
	}
	entry := hs.Providers[found[0]]
	// Resolve anchors, aliases and merge keys (Synapse's YAML loader
	// takes them), then re-encode the block to decode it strictly:
	// unknown keys are errors.
	var plain map[string]any
	if entry.Config.Kind != 0 {
		if err := entry.Config.Decode(&plain); err != nil {
			return "", fmt.Errorf("synapse config %s: %s config: %w", path, providerModule, err)
		}
	}
	var raw bytes.Buffer
	if err := yaml.NewEncoder(&raw).Encode(plain); err != nil {
		return "", fmt.Errorf("synapse config %s: provider config: %w", path, err)
	}
	var pc providerConfig
	dec := yaml.NewDecoder(&raw)
	dec.KnownFields(true)
	if err := dec.Decode(&pc); err != nil && entry.Config.Kind != 0 {
		return "", fmt.Errorf("synapse config %s: %s config: %s", path, providerModule,
			strings.ReplaceAll(err.Error(), "field ", "unknown key "))
	}
	cfg.Bucket, cfg.RegionName, cfg.EndpointURL = pc.Bucket, pc.RegionName, pc.EndpointURL
	cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken = pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken
	cfg.Prefix, cfg.StorageClass = pc.Prefix, pc.StorageClass
	cfg.SSECustomerKey, cfg.SSECustomerAlgo = pc.SSECustomerKey, pc.SSECustomerAlgo
	cfg.RequestChecksumCalculation, cfg.ResponseChecksumValidation = pc.RequestChecksumCalculation, pc.ResponseChecksumValidation
	if pc.ThreadpoolSize != 0 {
		cfg.UploadConcurrency = pc.ThreadpoolSize
	}
	cfg.StoreLocal = deref(entry.StoreLocal)
	cfg.StoreRemote = deref(entry.StoreRemote)
	cfg.StoreSynchronous = deref(entry.StoreSynchronous)
	if hs.MediaStorePath == "" {
		return "", errors.New("synapse config " + path + ": media_store_path is not set")
	}
	return hs.MediaStorePath, nil
}

// errNoProvider is a homeserver.yaml without the provider's block (one
// already moved to s3mediafs): with a configuration file of our own it
// gives only media_store_path, which loadSynapseConfig still returns.
var errNoProvider = errors.New("no media_storage_providers entry")

func deref(b *bool) bool { return b != nil && *b }
