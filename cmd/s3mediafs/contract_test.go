// The embedded quickstart store and the instrumented store pass the store
// contract (storetest).

package main

import (
	"context"
	"log/slog"
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cache/objstore/storetest"
	"github.com/s3mediafs/s3mediafs/s3"
)

// embeddedClient starts the quickstart's embedded store in a temporary
// directory and returns a client of it; both stop when the test ends.
func embeddedClient(t *testing.T) *s3.Client {
	t.Helper()
	emb, err := startEmbeddedStore(t.TempDir(), embeddedBucket, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	client, err := s3.New(context.Background(), s3.Config{Bucket: embeddedBucket, Endpoint: "http://embedded", ForcePathStyle: true,
		UnixSocket: emb.Socket, AccessKeyID: embeddedKey, SecretAccessKey: embeddedSecret, Region: "us-east-1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	return client
}

// The quickstart's embedded store keeps the store contract.
func TestEmbeddedStoreKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store { return embeddedClient(t) })
}

// The metrics decorator passes every request and answer through.
func TestInstrumentedStoreKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store {
		return instrumentedStore{Store: objstore.NewMem(), m: newMetrics()}
	})
}
