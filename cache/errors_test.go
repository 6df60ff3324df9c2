// Tests of the error idiom: only a real absence is ErrNotExist.

package cache

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/s3mediafs/s3mediafs/cache/index"
	"github.com/s3mediafs/s3mediafs/cache/objstore"
)

// An index that cannot be read must never make an existing file look
// absent: the caller would be told that media is gone.
func TestIndexFailureIsNotAbsence(t *testing.T) {
	ctx := context.Background()
	c := openTest(t, t.TempDir(), objstore.NewMem(), nil)
	h, _, err := c.Create(ctx, "f", os.O_RDWR|os.O_CREATE, NewFile{Mode: 0o644})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(ctx)
	if _, err := h.WriteAt(ctx, []byte("x"), 0); err != nil {
		t.Fatal(err)
	}
	if err := h.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Corrupt the file's record: the next write must fail, but not as
	// "no such file".
	if err := c.ix.Badger().Update(func(txn *badger.Txn) error {
		return txn.Set(index.EntryKey("f"), []byte{index.RecordVersion, 0, 99})
	}); err != nil {
		t.Fatal(err)
	}
	for name, op := range map[string]func() error{
		"write":    func() error { _, err := h.WriteAt(ctx, []byte("y"), 0); return err },
		"truncate": func() error { return h.Truncate(ctx, 0) },
	} {
		err := op()
		if err == nil {
			t.Fatalf("%s over a corrupt record succeeded", name)
		}
		if errors.Is(err, ErrNotExist) {
			t.Fatalf("%s over a corrupt record: %v reads as absence", name, err)
		}
	}
}

// The idiom is kept by construction: no code in this package joins an
// error with a sentinel, which would make the error match the sentinel.
func TestNoSentinelJoined(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "Join" {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); !ok || id.Name != "errors" {
				return true
			}
			for _, a := range call.Args {
				if id, ok := a.(*ast.Ident); ok && strings.HasPrefix(id.Name, "Err") {
					t.Errorf("%s: errors.Join with the sentinel %s: use errorOr", fset.Position(call.Pos()), id.Name)
				}
			}
			return true
		})
	}
}
