// Package index is the cache's Badger index: one record per known file
// or directory, the marks of work owed to the store, the eviction order
// of clean files, the byte accounting, and the journal of open multipart
// uploads. Every key's layout is in keys.go (a record's own key in
// record.go, beside the record); the table of them all is in
// the cache package's documentation.
//
// This package is the only one that sees Badger: callers read through
// View (DB.View) and write through Tx (DB.Update), whose methods are named
// operations (a record, an owed mark, a hidden key, a move, a rename under
// way, a walk), never keys or prefixes. A read-write transaction writes
// records only through Tx.Put and Tx.Del, which keep the accounting and
// the eviction order in step with them. Callers run their updates under one lock of
// their own, so transactions never conflict.
package index
