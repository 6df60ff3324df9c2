// Path validation: nothing it accepts can leave the prefix or the mount.

package cache

import "testing"

func FuzzValidPath(f *testing.F) {
	for _, s := range []string{"local_content/ab/cd/x", "../x", "a//b", "", "a/./b", "url_cache/2026-11-25/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if validPath(p) != nil {
			return
		}
		// An accepted path has no empty, "." or ".." component, so it
		// cannot leave the prefix or the mount.
		for _, part := range splitAll(p) {
			if part == "" || part == "." || part == ".." {
				t.Fatalf("accepted %q", p)
			}
		}
	})
}

func splitAll(p string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			out = append(out, p[start:i])
			start = i + 1
		}
	}
	return out
}
