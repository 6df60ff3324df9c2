// Package reconcile compares an s3mediafs bucket with the Synapse database
// that owns it: which objects no media row accounts for (orphans, left by
// synapse-s3-storage-provider, which never deletes from S3), which rows
// have no file anywhere (missing), and which files are not in S3 yet. It
// can delete the orphans, in batches, resumably, never one the database
// gained meanwhile.
//
// Both sides are streamed in key order and merged, so memory stays bounded
// whatever the size of the bucket: the bucket lists in key order, and the
// database's keys are sorted on disk (sortedKeys, runs of 262,144 keys,
// about 100 bytes a key) because no SQL collation sorts them the way S3
// does.
//
// # Rows to keys
//
// Rows map to keys as Synapse lays out its media store (layout.go):
//
//	local_media_repository.media_id      local_content/AB/CD/EFGH…
//	  with url_cache not NULL            url_cache/DATE/REST or url_cache/AB/CD/EFGH…
//	local_media_repository_thumbnails    local_thumbnails/AB/CD/EFGH…/W-H-TOP-SUB-METHOD
//	  of a URL preview                   url_cache_thumbnails/…
//	remote_media_cache.filesystem_id     remote_content/ORIGIN/AB/CD/EFGH…
//	remote_media_cache_thumbnails        remote_thumbnail/ORIGIN/AB/CD/EFGH…/W-H-TOP-SUB-METHOD
//
// A row whose path Synapse itself would refuse is counted, not guessed.
// Local rows with a NULL media_length (an upload announced and not yet
// sent, Synapse 1.81+) owe no file and are not missing. Objects outside
// these six trees are not Synapse's and are never deleted.
//
// # The database
//
// The database section of homeserver.yaml is read: psycopg2 with libpq
// keys (user, password, database, host, port, sslmode…, and the PG*
// environment variables; Synapse's cp_* pool keys are ignored), or sqlite3
// with its database path; no section means Synapse's default
// homeserver.db beside the file. Only read-only transactions are opened
// (PostgreSQL: REPEATABLE READ READ ONLY, one snapshot; SQLite: opened
// read-only with query_only). Table layouts checked: Synapse's schema 16
// (2015: no url_cache, quarantined_by or last_access_ts) and the current
// one (schema 94); only the columns every version has are read, and a
// missing one is an error that names it.
//
// # Deleting
//
// Deletes go in DeleteObjects batches of 1,000 keys, several batches at a
// time. Before each batch the database is asked again in a fresh
// transaction and any key that gained a row is kept; then each object is
// checked (HEAD) and one rewritten since the listing is kept. Every key is
// appended to the deleted log (time, key with the prefix, size) and the
// log synced before its batch is sent: a killed run is resumed by running
// it again, and no deleted key is ever missing from the log.
//
// # Scratch
//
// Each run sorts in a scratch directory of its own in --temp-dir, marked
// with its process ID and removed at its end; a run removes the scratch
// of runs that died without removing theirs.
//
// # Scale
//
// One million media and 1.1 million objects: 5.0 s and 103 MiB peak RSS
// (BenchmarkReconcileMillion; scripts/bench/RESULTS.md).
package reconcile
