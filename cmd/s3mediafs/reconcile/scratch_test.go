// A dead run's scratch files are removed.

package reconcile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// A run killed with SIGKILL leaves its scratch directory; the next run
// removes it, and never one whose owner still runs.
func TestDeadRunsScratchIsRemoved(t *testing.T) {
	dir := t.TempDir()
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Skip("no true(1):", err)
	}
	mark := func(name string, pid int) string {
		p := filepath.Join(dir, name)
		os.Mkdir(p, 0o700)
		os.WriteFile(filepath.Join(p, "sorted-1"), make([]byte, 1<<10), 0o600)
		if pid != 0 {
			os.WriteFile(filepath.Join(p, scratchOwner), []byte(strconv.Itoa(pid)), 0o600)
		}
		return p
	}
	dead := mark(scratchPrefix+"dead", gone.Process.Pid)
	alive := mark(scratchPrefix+"alive", os.Getppid())
	unknown := mark(scratchPrefix+"unmarked", 0)
	other := mark("not-ours", gone.Process.Pid)

	tmp, err := newScratch(dir)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{dead: false, alive: true, unknown: true, other: true, tmp: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", filepath.Base(p), err == nil, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(tmp, scratchOwner)); string(b) != strconv.Itoa(os.Getpid()) {
		t.Errorf("own scratch names pid %q", b)
	}
}
