// Keys relative to the prefix.

package s3

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// A key a LIST returns becomes a name only if it decodes and lies below
// the prefix asked for: a store's answer is input.
func TestRelativeKey(t *testing.T) {
	for _, c := range []struct {
		key  string
		enc  types.EncodingType
		want string
		ok   bool
	}{
		{"pre/a b", "", "a b", true},
		{"pre%2Fa+b%2Bc", types.EncodingTypeUrl, "a b+c", true},
		{"pre/%41", "", "%41", true},
		{"other/x", "", "", false},
		{"pre", "", "", false},
		{"pre%zz", types.EncodingTypeUrl, "", false},
		{"../pre/x", "", "", false},
	} {
		got, ok := relativeKey(aws.String(c.key), "pre/", c.enc)
		if got != c.want || ok != c.ok {
			t.Errorf("relativeKey(%q, %q) = %q, %v; want %q, %v", c.key, c.enc, got, ok, c.want, c.ok)
		}
	}
}
