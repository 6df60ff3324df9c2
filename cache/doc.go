// Package cache is the write-back cache behind the mount: a Badger index
// of every known file and directory, the local data files, the upload
// queue that moves dirty files to the object store, and the fetching of
// files only the store has. It never imports the S3 client: the store is
// objstore.Store, the one store contract (cache/objstore).
//
// # Records and their states
//
// The index (package index) holds one record per known file or directory
// (index/record.go), keyed by parent and name so that a directory listing
// is one prefix scan.
// A file moves
//
//	Dirty      only the local data file has the newest bytes; an upload is owed
//	Uploading  an upload of the current generation has started
//	Clean      the local data file and the store hold the same bytes
//	Remote     only the store has the bytes; there is no local data file
//	Local      a tree kept out of the store (url_cache); never uploaded or evicted
//	Special    a FIFO, socket or device node: in the index only, no bytes
//
// Each change is one Badger transaction, and a data file is complete
// before its record says so. Every record carries a generation that each
// local change increases; an upload marks a file clean only if the
// generation it read is still current, so the newest write always wins.
//
// # Badger keys
//
// Built in index/keys.go, but for the record's own key (index/record.go):
//
//	n<parent>\x00<name>        record (index/record.go): a file or a directory
//	p<path>                    an upload or a delete is owed; with no record, a tombstone
//	p<dir>/                    a DELETE of the folder key dir/ is owed (stores that keep folders)
//	h<path>                    removed here, kept in the store (delete_from_s3: false)
//	t<dir>                     a removed tree, kept in the store: hides everything below
//	l<be64 time><path>         clean files by last open, for eviction (index/tx.go)
//	a<path>                    be64 last open of a clean file: finds its l key
//	m<key>\x00<upload id>      an open multipart upload (\x00 alone: being created)
//	M<key>                     a rename still has to move this key's object away; value: the
//	                           record moving it (moveobject.go); the key also has a p mark
//	R<old>\x00<new>            a directory rename's index move under way (renamedir.go)
//	i<be64 ino>                the path of the record with this inode number, for a
//	                           daemon that takes over a live mount (fs.Adopt)
//	s:schema                   the index format (index/db.go); older ones are upgraded
//	s:acct                     local bytes and dirty bytes, kept in step with records
//	s:running                  set while a daemon has the cache open: an unclean stop
//	s:ino                      the inode number sequence
//	s:root                     the mount root's mode, owner and times (root.go)
//
// # Locks, and the order they are taken in
//
//	openFile.mu     (open.go) the open file's data file and size: shared by
//	                writes and truncates, exclusive by flush and by whoever sets
//	                the data file; taken before Cache.mu
//	storeStream.mu  (stream.go) a read served from the store, its body and
//	                position; held for one read; taken before Cache.mu
//	Cache.mu        (cache.go) every index read-modify-write, the open files,
//	                the caches of what the store holds (verified, negative,
//	                listed, readdirs, made, subtrees), the fetches in flight
//	                (downloads), the listings' watches, the LRU's pending
//	                accesses; a name ending in Locked means the caller holds
//	                it, and only it (other locks' holders are named in doc
//	                comments)
//	Queue.mu        (uploadqueue) the upload queue: order and jobs; taken under
//	                Cache.mu, never the other way round
//	download.mu     (download.go) a fetch's scratch file; a leaf
//	movingTrees.mu  (renamedir.go) the directory renames under way; a leaf
//	births.mu       (evict.go) data files made during an orphan sweep; a leaf
//	freeSpace.mu, spares.mu  (datafiles) the last statfs sample and the
//	                pool of empty data files; leaves
//	notifier.mu     (space.go) a wake-up channel; a leaf
//	stats.mu        (stats.go) the last store error and its time; a leaf
//	rmdirChecks.mu  (rmdircheck.go) the removed directories to check; a leaf
//	deleteBatches.mu (deletebatch.go) the deletes waiting for a request;
//	                taken before Cache.lifeMu (it starts its sender), never
//	                under Cache.mu
//
// No function returns holding a lock it took.
//
// # Where things live
//
// Cache is one type whose methods are spread over files by the work they
// do, as gocryptfs spreads its filesystem: no file's methods own state
// the others cannot reach. That is deliberate. A fetch, an eviction, an
// upload's end and a rename each change an index record, the open file
// for it and the caches of what the store holds in one critical section
// under Cache.mu, so splitting that state between owners would only add
// locks to take in order. What does stand alone is a type with its own
// lock and no path back to the Cache, a leaf of the lock order: the
// fetch budget, a download, a stream, the renames under way, the orphan
// sweep's births, the circuit breaker, the rmdir checks, the delete
// batches, the upload queue, the data files.
//
//	          fs (the kernel's requests)
//	             |
//	    Cache: exported operations, Cache.mu, the index (index/)
//	   /       |         |          |            \
//	download  stream  uploadqueue  datafiles  storeHealth, fetchBudget,
//	(a fetch) (reads)  (owed work) (data files) movingTrees, births,
//	                                             rmdirChecks, deleteBatches:
//	                                             leaves
//	             |
//	    objstore.Store (the S3 client, or a test store)
//
//	cache.go       Open, Close, Start, Drain: the cache's life; options.go: its Options
//	create.go      Create, Mkdir; special.go: Mknod, Symlink, Readlink
//	remove.go      Unlink, Rmdir, and what rmdir asks the store
//	rmdircheck.go  the background check of directories rmdir removed on the
//	               index's word
//	rename.go      Rename of a file
//	renamedir.go   Rename of a directory, in batches under an intent
//	learntree.go   the listing of a tree a rename must know whole
//	moveobject.go  an object's owed server-side move
//	attr.go        SetAttr, Truncate by path; root.go: the mount root's attributes
//	open.go        OpenFile, the open file and its Handle; passthrough; Release
//	read.go        ReadAt: local, arriving, or from the store
//	write.go       WriteAt, Truncate, Allocate, Flush, Fsync: a write's commit
//	lookup.go      Stat and Lookup (which leaves an object's metadata
//	               unread): the index first
//	lookupstore.go then the store, one LIST
//	listahead.go   the objects that LIST and the pages after it found,
//	               recorded in the index ahead of the lookups to come
//	revalidate.go  rechecking clean files against the store, behind the
//	               lookup
//	meta.go        owner, mode and times as object metadata; the fetch a
//	               lookup starts ahead
//	subtree.go     trees learned by lookups, answering rmdir
//	health.go      the store's circuit breaker
//	readdir.go     listings merged with the store's, a page at a time
//	fetch.go       a cache miss: one fetch shared by every reader
//	getranges.go   its requests: one GET, or ranged GETs side by side
//	verify.go      the check of every download: length, then CRC-32C,
//	               the store's checksum or the ETag's MD5
//	scrub.go       the background re-check of cached files
//	download.go    a fetch in flight, readable as its bytes arrive
//	stream.go      reads served from the store for files the cache cannot hold
//	upload.go      one path's owed upload, delete or copy
//	deletebatch.go the owed deletes reached together, as one DeleteObjects
//	uploadqueue/   the upload queue: one job per path, with its backoff
//	retry.go       the retry policy, for requests a caller waits on and owed work
//	evict.go       eviction of clean files, LRU; the orphan sweep
//	space.go       the size limit, free-space floor, back-pressure
//	datafiles/     the data files: names, paths, spares made ahead, free space
//	localfiles.go  the files only the cache holds, for reconcile
//	paths.go       path validation; data file names and places
//	errors.go      the errors the cache returns (fs maps them to errno)
//	txn.go         the cache's index transactions, which keep its counters
//	index/         the Badger index: records and their format, marks of owed
//	               work, transactions that keep the accounting and the LRU
//	               in step (tx.go), the reads (view.go), every key's
//	               builder (keys.go; a record's key beside the record), the
//	               journal of multipart uploads the S3 client is given, and
//	               the space it keeps so that a full disk never kills it
//	               (space.go)
//	objstore/      the store contract (Store, its results and errors), the
//	               in-memory and fault-injecting stores; objstore/storetest
//	               checks any store against the contract
//
// # How the main paths go
//
// A write: Create makes a Dirty record and an empty data file from a pool
// of spares; the kernel writes the data file directly (passthrough) or
// through Handle.WriteAt; each close(2) flushes (Handle.Flush) and queues
// the path; the queue's worker (upload.go) PUTs the file and marks it
// Clean if its generation is unchanged.
//
// A cache miss: Stat finds the name in the index or with one LIST, as
// Remote; the first read starts one fetch (fetch.go) shared by every
// reader, who read its bytes once they have all arrived and passed their
// check (verify.go, download.go); the fetch installs the data file whole
// and marks the record Clean with the bytes' CRC-32C.
//
// Eviction (evict.go): past 95 % of cache_max_size, clean files not open
// are evicted least recently opened first: the data file goes, the
// record becomes Remote.
//
// At start nothing walks the cache directory or the index: the mount
// serves first, then the pending markers (and only they) re-queue owed
// work.
package cache
