// Package s3 is the only package that talks to S3: Client implements the
// cache's store contract (objstore.Store) with the AWS SDK, and classifies
// errors (not found, permanent, transient) into objstore.Error. It passes
// the contract's suite (objstore/storetest) on every test server.
//
// # Where things live
//
//	errors.go   error classification
//	client.go   New: configuration, credentials, checksums, storage classes,
//	            and the multipart journal New is given
//	objects.go  PUT, GET, HEAD, COPY, DELETE, the one-request Lookup, List
//	multipart.go  large uploads, journaled so a crash leaves no parts
//	            behind; the abort of what a previous run left
//	batch.go    DeleteObjects, for reconcile
//
// Listings ask for URL-encoded keys and decode them only when the store
// says it encoded them; objects and prefixes of a page are handed over in
// key order. A key ending in "/" is a folder marker, not a file.
package s3
