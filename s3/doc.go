// Package s3 is the only package that talks to S3: it turns the AWS SDK
// into the small object-store contract the cache needs (Store), classifies
// errors (not found, permanent, transient), and provides an in-memory store
// (Mem) and a fault-injecting wrapper (Faulty) for tests.
//
// # Where things live
//
//	store.go    the Store contract and error classification
//	client.go   New: configuration, credentials, checksums, storage classes
//	objects.go  PUT, GET, HEAD, DELETE, the one-request Lookup, List
//	multipart.go  large uploads, journaled so a crash leaves no parts behind
//	batch.go    DeleteObjects, for reconcile
//	mem.go, faulty.go  the test stores
//
// Listings ask for URL-encoded keys and decode them only when the store
// says it encoded them; objects and prefixes of a page are handed over in
// key order. A key ending in "/" is a folder marker, not a file.
package s3
