// The index on its own: transactions keep the accounting and the LRU
// order in step with the records, the accounting and the running mark
// persist, and the multipart journal holds what was begun and not ended.

package index

import (
	"testing"
)

func openTest(t *testing.T, dir string) *DB {
	t.Helper()
	ix, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return ix
}

func TestUpdateKeepsAccountingAndLRU(t *testing.T) {
	dir := t.TempDir()
	ix := openTest(t, dir)
	var acct Acct
	step := func(want Acct, fn func(t *Tx) error) {
		t.Helper()
		d, err := ix.Update(acct, nil, fn)
		if err != nil {
			t.Fatal(err)
		}
		if d != want {
			t.Fatalf("change %+v, want %+v", d, want)
		}
		acct = Acct{acct.Used + d.Used, acct.Dirty + d.Dirty, acct.DirtyFiles + d.DirtyFiles}
	}
	inLRU := func() bool {
		t.Helper()
		var ok bool
		if err := ix.View(func(v View) (err error) { _, ok, err = v.LRUGet("a/f"); return err }); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	f := Record{State: Dirty, Ino: 2, Size: 10, Gen: 1, Data: "00ab"}
	step(Acct{Used: 10, Dirty: 10, DirtyFiles: 1}, func(t *Tx) error { return t.Put("a/f", f) })
	if inLRU() {
		t.Fatal("a dirty file is in the eviction order")
	}
	f.State = Clean
	step(Acct{Dirty: -10, DirtyFiles: -1}, func(t *Tx) error { return t.Put("a/f", f) })
	if !inLRU() {
		t.Fatal("a clean file is not in the eviction order")
	}
	f.State, f.Data = Remote, ""
	step(Acct{Used: -10}, func(t *Tx) error { return t.Put("a/f", f) })
	if inLRU() {
		t.Fatal("an evicted file is still in the eviction order")
	}
	f.State, f.Data = Dirty, "00cd"
	step(Acct{Used: 10, Dirty: 10, DirtyFiles: 1}, func(t *Tx) error { return t.Put("a/f", f) })
	step(Acct{Used: -10, Dirty: -10, DirtyFiles: -1}, func(t *Tx) error { return t.Del("a/f") })
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}

	ix = openTest(t, dir)
	defer ix.Close()
	if got, err := ix.LoadAcct(); err != nil || got != acct {
		t.Fatalf("accounting after reopen: %+v, %v; want %+v", got, err, acct)
	}
}

func TestRunningMarkAndJournalPersist(t *testing.T) {
	dir := t.TempDir()
	ix := openTest(t, dir)
	if unclean, err := ix.MarkRunning(); err != nil || unclean {
		t.Fatalf("a fresh index: unclean %v, %v", unclean, err)
	}
	for _, e := range [][2]string{{"big", ""}, {"big", "id1"}, {"other", "id2"}} {
		if err := ix.BeginMultipart(e[0], e[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.EndMultipart("big", ""); err != nil {
		t.Fatal(err)
	}
	if err := ix.EndMultipart("other", "id2"); err != nil {
		t.Fatal(err)
	}
	ix.Close() // without MarkStopped: a crash

	ix = openTest(t, dir)
	defer ix.Close()
	if unclean, err := ix.MarkRunning(); err != nil || !unclean {
		t.Fatalf("after a stop without MarkStopped: unclean %v, %v", unclean, err)
	}
	var open [][2]string
	if err := ix.OpenMultiparts(func(k, id string) { open = append(open, [2]string{k, id}) }); err != nil {
		t.Fatal(err)
	}
	if len(open) != 1 || open[0] != [2]string{"big", "id1"} {
		t.Fatalf("journal after reopen: %v", open)
	}
}
