// The in-memory and fault-injecting stores pass the store contract
// (storetest).

package objstore_test

import (
	"testing"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
	"github.com/s3mediafs/s3mediafs/cache/objstore/storetest"
)

func TestMemKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return objstore.NewMem() })
}

// Faulty with no hooks set is its inner store.
func TestFaultyKeepsTheContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) objstore.Store { return &objstore.Faulty{Store: objstore.NewMem()} })
}
