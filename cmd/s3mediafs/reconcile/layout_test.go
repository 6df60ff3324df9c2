// Synapse's media layout: the keys of a media row, and the row of a key.

package reconcile

import "testing"

// Each key is the path Synapse's media store gives the row (synapse/media/
// filepath.py), relative to media_store_path.
func TestKeysOfRows(t *testing.T) {
	cases := []struct {
		name string
		got  string
		ok   bool
		want string
	}{}
	add := func(name string, want string) func(string, bool) {
		return func(got string, ok bool) {
			cases = append(cases, struct {
				name string
				got  string
				ok   bool
				want string
			}{name, got, ok, want})
		}
	}
	add("local", "local_content/ab/cd/efghijklmnopqrstuvwx")(LocalMedia("abcdefghijklmnopqrstuvwx"))
	add("local thumbnail", "local_thumbnails/ab/cd/efghij/320-240-image-jpeg-scale")(LocalThumbnail("abcdefghij", 320, 240, "image/jpeg", "scale"))
	add("remote", "remote_content/matrix.org/GH/ij/KLMNOP")(RemoteMedia("matrix.org", "GHijKLMNOP"))
	add("remote thumbnail", "remote_thumbnail/matrix.org/GH/ij/KLMNOP/32-32-image-png-crop")(RemoteThumbnail("matrix.org", "GHijKLMNOP", 32, 32, "image/png", "crop"))
	add("url cache, dated id", "url_cache/2024-01-31/AbCdEf")(URLCache("2024-01-31_AbCdEf"))
	add("url cache, old id", "url_cache/Ab/Cd/Ef")(URLCache("AbCdEf"))
	add("url cache thumbnail, dated id", "url_cache_thumbnails/2024-01-31/AbCdEf/640-480-image-webp-scale")(URLCacheThumbnail("2024-01-31_AbCdEf", 640, 480, "image/webp", "scale"))
	add("url cache thumbnail, old id", "url_cache_thumbnails/Ab/Cd/Ef/1-1-image-gif-crop")(URLCacheThumbnail("AbCdEf", 1, 1, "image/gif", "crop"))
	add("content type with a parameter", "local_thumbnails/ab/cd/ef/8-8-image-svg+xml-scale")(LocalThumbnail("abcdef", 8, 8, "image/svg+xml", "scale"))
	for _, c := range cases {
		if !c.ok || c.got != c.want {
			t.Errorf("%s: %q %v, want %q", c.name, c.got, c.ok, c.want)
		}
	}
	// What Synapse itself refuses is not mapped (no key), never guessed.
	for name, f := range map[string]func() (string, bool){
		"short id":           func() (string, bool) { return LocalMedia("abc") },
		"slash in id":        func() (string, bool) { return LocalMedia("ab/cdefgh") },
		"dot-dot origin":     func() (string, bool) { return RemoteMedia("..", "abcdefgh") },
		"slash in origin":    func() (string, bool) { return RemoteMedia("a/b", "abcdefgh") },
		"type without slash": func() (string, bool) { return LocalThumbnail("abcdefgh", 1, 1, "image", "crop") },
		"slash in method":    func() (string, bool) { return LocalThumbnail("abcdefgh", 1, 1, "image/png", "a/b") },
		"empty origin":       func() (string, bool) { return RemoteMedia("", "abcdefgh") },
		"NUL in id":          func() (string, bool) { return LocalMedia("abcd\x00efgh") },
	} {
		if k, ok := f(); ok {
			t.Errorf("%s mapped to %q", name, k)
		}
	}
}

func TestOwnerOfKey(t *testing.T) {
	for key, want := range map[string]Owner{
		"local_content/ab/cd/efgh":                         {Table: TableLocal, ID: "abcdefgh"},
		"local_thumbnails/ab/cd/efgh/32-32-image-png-crop": {Table: TableLocal, ID: "abcdefgh"},
		"remote_content/matrix.org/ab/cd/efgh":             {Table: TableRemote, Origin: "matrix.org", ID: "abcdefgh"},
		"remote_thumbnail/matrix.org/ab/cd/efgh/1-1-a-b-c": {Table: TableRemote, Origin: "matrix.org", ID: "abcdefgh"},
		"url_cache/2024-01-31/AbCdEf":                      {Table: TableLocal, ID: "2024-01-31_AbCdEf"},
		"url_cache/Ab/Cd/Ef":                               {Table: TableLocal, ID: "AbCdEf"},
		"url_cache_thumbnails/2024-01-31/AbCdEf/1-1-a-b-c": {Table: TableLocal, ID: "2024-01-31_AbCdEf"},
	} {
		got, ok := OwnerOf(key)
		if !ok || got != want {
			t.Errorf("OwnerOf(%q) = %+v %v, want %+v", key, got, ok, want)
		}
	}
	for _, key := range []string{"", "local_content/ab", "other/ab/cd/ef", "local_content/ab/cd/ef/extra", "remote_content/x/ab/cd"} {
		if o, ok := OwnerOf(key); ok {
			t.Errorf("OwnerOf(%q) = %+v, want not a media key", key, o)
		}
	}
}
