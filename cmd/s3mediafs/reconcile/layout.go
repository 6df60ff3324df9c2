package reconcile

import (
	"fmt"
	"regexp"
	"strings"
)

// The media store's top-level trees (synapse/media/filepath.py).
const (
	treeLocal           = "local_content"
	treeLocalThumbnails = "local_thumbnails"
	treeRemote          = "remote_content"
	treeRemoteThumbnail = "remote_thumbnail"
	treeURLCache        = "url_cache"
	treeURLCacheThumbs  = "url_cache_thumbnails"
)

// Trees are the top-level directories Synapse writes media into; objects
// anywhere else are not Synapse's, and reconcile never deletes them.
var Trees = []string{treeLocal, treeLocalThumbnails, treeRemote, treeRemoteThumbnail, treeURLCache, treeURLCacheThumbs}

// datedID is the URL-preview media id of Synapse since 0.99: a date, then
// the random part, stored under url_cache/<date>/<rest>.
var datedID = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}`)

// component reports whether s can be one path component, as Synapse's
// _validate_path_component demands: not empty, no separator, no NUL, not
// "." or "..".
func component(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\x00")
}

// split3 is Synapse's AB/CD/REST split of a media or filesystem id.
func split3(id string) (string, bool) {
	if len(id) < 5 || !component(id) {
		return "", false
	}
	return id[:2] + "/" + id[2:4] + "/" + id[4:], true
}

// urlCacheDir is the directory of a URL-preview media id.
func urlCacheDir(id string) (string, bool) {
	if datedID.MatchString(id) && len(id) > 11 && component(id) {
		return id[:10] + "/" + id[11:], true
	}
	return split3(id)
}

// thumbnailName is "{width}-{height}-{top type}-{sub type}-{method}".
func thumbnailName(width, height int64, contentType, method string) (string, bool) {
	top, sub, ok := strings.Cut(contentType, "/")
	if !ok || !component(top) || !component(sub) || !component(method) {
		return "", false
	}
	name := fmt.Sprintf("%d-%d-%s-%s-%s", width, height, top, sub, method)
	return name, component(name)
}

// LocalMedia is the key of a local_media_repository row.
func LocalMedia(mediaID string) (string, bool) {
	p, ok := split3(mediaID)
	return treeLocal + "/" + p, ok
}

// LocalThumbnail is the key of a local_media_repository_thumbnails row.
func LocalThumbnail(mediaID string, width, height int64, contentType, method string) (string, bool) {
	dir, ok := split3(mediaID)
	return thumbnailIn(treeLocalThumbnails+"/"+dir, ok, width, height, contentType, method)
}

// thumbnailIn is the key of a thumbnail in dir, valid if dirOK and the
// name is.
func thumbnailIn(dir string, dirOK bool, width, height int64, contentType, method string) (string, bool) {
	name, ok := thumbnailName(width, height, contentType, method)
	return dir + "/" + name, dirOK && ok
}

// RemoteMedia is the key of a remote_media_cache row: origin and
// filesystem_id (not media_id).
func RemoteMedia(origin, filesystemID string) (string, bool) {
	p, ok := split3(filesystemID)
	return treeRemote + "/" + origin + "/" + p, ok && component(origin)
}

// RemoteThumbnail is the key of a remote_media_cache_thumbnails row.
func RemoteThumbnail(origin, filesystemID string, width, height int64, contentType, method string) (string, bool) {
	dir, ok := split3(filesystemID)
	return thumbnailIn(treeRemoteThumbnail+"/"+origin+"/"+dir, ok && component(origin), width, height, contentType, method)
}

// URLCache is the key of a local_media_repository row with url_cache set.
func URLCache(mediaID string) (string, bool) {
	p, ok := urlCacheDir(mediaID)
	return treeURLCache + "/" + p, ok
}

// URLCacheThumbnail is the key of a thumbnail of a URL-preview media.
func URLCacheThumbnail(mediaID string, width, height int64, contentType, method string) (string, bool) {
	dir, ok := urlCacheDir(mediaID)
	return thumbnailIn(treeURLCacheThumbs+"/"+dir, ok, width, height, contentType, method)
}

// Table says which media table owns a key.
type Table int

const (
	// TableLocal is local_media_repository (with its thumbnails and URL
	// previews), keyed by media_id.
	TableLocal Table = iota + 1
	// TableRemote is remote_media_cache, keyed by origin and filesystem_id.
	TableRemote
)

// Owner is the media row a key belongs to: the row itself, or the media
// its thumbnail was made from.
type Owner struct {
	Table  Table
	Origin string // TableRemote only
	ID     string // media_id, or filesystem_id for TableRemote
}

// OwnerOf parses a key back to its media row; ok is false for a key that
// is no media path of Synapse's.
func OwnerOf(key string) (Owner, bool) {
	parts := strings.Split(key, "/")
	for _, p := range parts {
		if !component(p) {
			return Owner{}, false
		}
	}
	joined := func(ps []string) (string, bool) {
		if len(ps[0]) != 2 || len(ps[1]) != 2 {
			return "", false
		}
		return ps[0] + ps[1] + ps[2], true
	}
	dated := func(ps []string) (string, bool) {
		if len(ps) >= 2 && len(ps[0]) == 10 && datedID.MatchString(ps[0]) {
			return ps[0] + "_" + ps[1], true
		}
		return "", false
	}
	var o Owner
	ok := false
	switch tree, rest := parts[0], parts[1:]; {
	case tree == treeLocal && len(rest) == 3, tree == treeLocalThumbnails && len(rest) == 4:
		o.Table = TableLocal
		o.ID, ok = joined(rest)
	case tree == treeRemote && len(rest) == 4, tree == treeRemoteThumbnail && len(rest) == 5:
		o.Table, o.Origin = TableRemote, rest[0]
		o.ID, ok = joined(rest[1:])
	case tree == treeURLCache && len(rest) == 2, tree == treeURLCacheThumbs && len(rest) == 3:
		o.Table = TableLocal
		if o.ID, ok = dated(rest); !ok {
			break
		}
	case tree == treeURLCache && len(rest) == 3, tree == treeURLCacheThumbs && len(rest) == 4:
		o.Table = TableLocal
		o.ID, ok = joined(rest)
	}
	return o, ok
}

// treeOf is a key's top-level directory.
func treeOf(key string) string {
	tree, _, _ := strings.Cut(key, "/")
	return tree
}
