// The S3 client passes the store contract (storetest), with and without a
// prefix.

package s3_test

import (
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cache/objstore/storetest"
	"github.com/s3mediafs/s3mediafs/s3/s3test"
)

// The client keeps the store contract on the test server (versitygw, and
// SeaweedFS when scripts/test.sh runs this package again against it), with
// and without a prefix.
func TestClientKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		c, _, _ := s3test.Bucket(t, "")
		return c
	})
}

func TestClientWithPrefixKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) objstore.Store {
		c, _, _ := s3test.Bucket(t, "pre fix/")
		return c
	})
}
