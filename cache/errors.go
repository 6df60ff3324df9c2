package cache

import (
	"errors"
	iofs "io/fs"

	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// Errors the cache returns; the fs package maps them to errno values.
var (
	ErrNotExist    = iofs.ErrNotExist
	ErrExist       = iofs.ErrExist
	ErrNotEmpty    = errors.New("directory not empty")
	ErrIsDir       = errors.New("is a directory")
	ErrNotDir      = errors.New("not a directory")
	ErrNameTooLong = errors.New("name too long for an object key")
	ErrInvalid     = errors.New("invalid argument")
	// ErrNotUTF8: object keys are UTF-8 (AWS says so; SeaweedFS refuses
	// other bytes), so a name that is not cannot be stored.
	ErrNotUTF8     = errors.New("name is not UTF-8, as object keys must be")
	ErrCrossDevice = errors.New("cannot move between a local-only tree and the store")
	ErrStore       = errors.New("object store unavailable")
	ErrClosed      = errors.New("cache is closed")
)

func isNotFound(err error) bool { return objstore.IsNotExist(err) }

func isPermanent(err error) bool { return objstore.IsPermanent(err) }
