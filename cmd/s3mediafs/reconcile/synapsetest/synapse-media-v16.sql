-- Synapse's media tables as schema version 16 (2015) created them: before
-- url_cache, quarantined_by and last_access_ts existed. Reconcile must
-- read a database that old as well.
CREATE TABLE local_media_repository (
    media_id TEXT,
    media_type TEXT,
    media_length INTEGER,
    created_ts BIGINT,
    upload_name TEXT,
    user_id TEXT,
    UNIQUE (media_id)
);
CREATE TABLE local_media_repository_thumbnails (
    media_id TEXT,
    thumbnail_width INTEGER,
    thumbnail_height INTEGER,
    thumbnail_type TEXT,
    thumbnail_method TEXT,
    thumbnail_length INTEGER,
    UNIQUE (media_id, thumbnail_width, thumbnail_height, thumbnail_type)
);
CREATE INDEX local_media_repository_thumbnails_media_id ON local_media_repository_thumbnails (media_id);
CREATE TABLE remote_media_cache (
    media_origin TEXT,
    media_id TEXT,
    media_type TEXT,
    created_ts BIGINT,
    upload_name TEXT,
    media_length INTEGER,
    filesystem_id TEXT,
    UNIQUE (media_origin, media_id)
);
CREATE TABLE remote_media_cache_thumbnails (
    media_origin TEXT,
    media_id TEXT,
    thumbnail_width INTEGER,
    thumbnail_height INTEGER,
    thumbnail_method TEXT,
    thumbnail_type TEXT,
    thumbnail_length INTEGER,
    filesystem_id TEXT,
    UNIQUE (media_origin, media_id, thumbnail_width, thumbnail_height, thumbnail_type)
);
