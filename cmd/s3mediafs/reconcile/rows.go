package reconcile

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
)

// RowCounts says what the database held.
type RowCounts struct {
	Local            int64 `json:"local_media"`
	LocalThumbnails  int64 `json:"local_thumbnails"`
	Remote           int64 `json:"remote_media"`
	RemoteThumbnails int64 `json:"remote_thumbnails"`
	// URLCache counts local media rows that are URL previews.
	URLCache int64 `json:"url_previews"`
	// Pending counts local media rows created for an upload that has not
	// arrived yet (media_length NULL, Synapse 1.81+): no file is owed yet.
	Pending int64 `json:"uploads_pending"`
	// Unmappable counts rows whose path Synapse itself would refuse.
	Unmappable int64 `json:"unmappable"`
}

// Keys streams the key of every media file the database accounts for, in
// no particular order, from one read-only snapshot.
func (s *Source) Keys(ctx context.Context, emit func(key string) error) (RowCounts, error) {
	var c RowCounts
	err := s.readOnly(ctx, func(tx *sql.Tx) error {
		return s.eachRow(ctx, tx, "", nil, &c, emit)
	})
	return c, err
}

// Owned returns which of keys the database accounts for now, read in a
// fresh read-only transaction: the last check before a delete.
func (s *Source) Owned(ctx context.Context, keys []string) (map[string]bool, error) {
	want := map[string]bool{}
	var localIDs, remoteIDs []any
	seen := map[string]bool{}
	for _, k := range keys {
		o, ok := OwnerOf(k)
		if !ok {
			continue
		}
		want[k] = true
		id := strconv.Itoa(int(o.Table)) + o.Origin + "\x00" + o.ID
		if seen[id] {
			continue
		}
		seen[id] = true
		if o.Table == TableLocal {
			localIDs = append(localIDs, o.ID)
		} else {
			remoteIDs = append(remoteIDs, o.ID)
		}
	}
	owned := map[string]bool{}
	emit := func(k string) error {
		if want[k] {
			owned[k] = true
		}
		return nil
	}
	err := s.readOnly(ctx, func(tx *sql.Tx) error {
		var c RowCounts
		if len(localIDs) > 0 {
			if err := s.eachRow(ctx, tx, "local", localIDs, &c, emit); err != nil {
				return err
			}
		}
		if len(remoteIDs) > 0 {
			return s.eachRow(ctx, tx, "remote", remoteIDs, &c, emit)
		}
		return nil
	})
	return owned, err
}

// eachRow reads the media tables and emits every key. only limits it to
// the local media (by media_id) or the remote media (by filesystem_id)
// listed in ids; "" reads everything.
func (s *Source) eachRow(ctx context.Context, tx *sql.Tx, only string, ids []any, c *RowCounts, emit func(string) error) error {
	where := func(col string) string {
		if only == "" {
			return ""
		}
		return " WHERE " + col + " IN (" + s.placeholders(len(ids)) + ")"
	}
	urlCache := "NULL"
	if s.has("local_media_repository", "url_cache") {
		urlCache = "url_cache"
	}
	pending := "0"
	if s.has("local_media_repository", "media_length") && only == "" {
		pending = "CASE WHEN media_length IS NULL THEN 1 ELSE 0 END"
	}
	if only != "remote" {
		q := "SELECT media_id, " + urlCache + ", " + pending + " FROM local_media_repository" + where("media_id")
		err := s.query(ctx, tx, q, ids, func(r *sql.Rows) error {
			var id string
			var url sql.NullString
			var isPending int
			if err := r.Scan(&id, &url, &isPending); err != nil {
				return err
			}
			c.Local++
			if isPending == 1 {
				c.Pending++
				return nil
			}
			if url.Valid {
				c.URLCache++
				return c.emit(emit)(URLCache(id))
			}
			return c.emit(emit)(LocalMedia(id))
		})
		if err != nil {
			return err
		}
		join, thumbURL := "", "NULL"
		if urlCache != "NULL" {
			join, thumbURL = " LEFT JOIN local_media_repository m ON m.media_id = t.media_id", "m.url_cache"
		}
		q = "SELECT t.media_id, t.thumbnail_width, t.thumbnail_height, t.thumbnail_type, t.thumbnail_method, " + thumbURL +
			" FROM local_media_repository_thumbnails t" + join + where("t.media_id")
		err = s.query(ctx, tx, q, ids, func(r *sql.Rows) error {
			var id, typ, method sql.NullString
			var w, h sql.NullInt64
			var url sql.NullString
			if err := r.Scan(&id, &w, &h, &typ, &method, &url); err != nil {
				return err
			}
			c.LocalThumbnails++
			if url.Valid {
				return c.emit(emit)(URLCacheThumbnail(id.String, w.Int64, h.Int64, typ.String, method.String))
			}
			return c.emit(emit)(LocalThumbnail(id.String, w.Int64, h.Int64, typ.String, method.String))
		})
		if err != nil {
			return err
		}
	}
	if only != "local" {
		q := "SELECT media_origin, filesystem_id FROM remote_media_cache" + where("filesystem_id")
		err := s.query(ctx, tx, q, ids, func(r *sql.Rows) error {
			var origin, fsid sql.NullString
			if err := r.Scan(&origin, &fsid); err != nil {
				return err
			}
			c.Remote++
			return c.emit(emit)(RemoteMedia(origin.String, fsid.String))
		})
		if err != nil {
			return err
		}
		q = "SELECT media_origin, filesystem_id, thumbnail_width, thumbnail_height, thumbnail_type, thumbnail_method FROM remote_media_cache_thumbnails" + where("filesystem_id")
		return s.query(ctx, tx, q, ids, func(r *sql.Rows) error {
			var origin, fsid, typ, method sql.NullString
			var w, h sql.NullInt64
			if err := r.Scan(&origin, &fsid, &w, &h, &typ, &method); err != nil {
				return err
			}
			c.RemoteThumbnails++
			return c.emit(emit)(RemoteThumbnail(origin.String, fsid.String, w.Int64, h.Int64, typ.String, method.String))
		})
	}
	return nil
}

// emit passes a mapped key on and counts one that could not be mapped.
func (c *RowCounts) emit(fn func(string) error) func(string, bool) error {
	return func(key string, ok bool) error {
		if !ok {
			c.Unmappable++
			return nil
		}
		return fn(key)
	}
}

func (s *Source) query(ctx context.Context, tx *sql.Tx, q string, args []any, each func(*sql.Rows) error) error {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read Synapse's database: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read Synapse's database: %w", err)
	}
	return nil
}

func (s *Source) placeholders(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		if i > 1 {
			b.WriteByte(',')
		}
		if s.engine == "sqlite" {
			b.WriteByte('?')
		} else {
			b.WriteString("$" + strconv.Itoa(i))
		}
	}
	return b.String()
}
