package reconcile

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// scratchPrefix names a run's scratch directory, where its sorted runs of
// keys go.
const scratchPrefix = "s3mediafs-reconcile-"

// scratchOwner is the file in a scratch directory naming the process that
// made it.
const scratchOwner = "pid"

// newScratch makes this run's scratch directory in dir (the system's
// temporary directory when empty), after removing those of runs that died
// without removing theirs (SIGKILL, a crash, a power cut): a run's sorted
// keys take about 100 bytes a key, so a dead run over millions of media
// leaves hundreds of megabytes behind.
func newScratch(dir string) (string, error) {
	if dir == "" {
		dir = os.TempDir()
	}
	removeDeadScratch(dir)
	tmp, err := os.MkdirTemp(dir, scratchPrefix)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(tmp, scratchOwner), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		os.RemoveAll(tmp)
		return "", err
	}
	return tmp, nil
}

// removeDeadScratch removes the scratch directories in dir whose owner is
// no longer running. One whose owner cannot be told (no pid file, another
// user's process) is left alone: another run may be using it.
func removeDeadScratch(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), scratchPrefix) {
			continue
		}
		p := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(p, scratchOwner))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			os.RemoveAll(p)
		}
	}
}
