package main

import (
	"bufio"
	"fmt"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// coveredBlocks are the source blocks that ran more often in the run with
// the lookup than in the run without, by file base name and package path.
type coveredBlocks struct {
	byFile map[string][]block
}

type block struct{ startLine, startCol, endLine, endCol int }

// has reports whether a position lies in a block that ran; a nil set has
// every position.
func (c *coveredBlocks) has(pos token.Position) bool {
	if c == nil {
		return true
	}
	for _, b := range c.byFile[filepath.Base(filepath.Dir(pos.Filename))+"/"+filepath.Base(pos.Filename)] {
		after := pos.Line > b.startLine || pos.Line == b.startLine && pos.Column >= b.startCol
		before := pos.Line < b.endLine || pos.Line == b.endLine && pos.Column <= b.endCol
		if after && before {
			return true
		}
	}
	return false
}

// recordLookup runs the recording test with and without its lookup and
// returns the blocks the lookup ran.
func recordLookup(which string) (*coveredBlocks, error) {
	dir, err := os.MkdirTemp("", "callpath")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	counts := [2]map[string]int{}
	for i := range counts {
		profile := filepath.Join(dir, fmt.Sprintf("lookup%d.txt", i))
		cmd := exec.Command("go", "test", "-count=1", "-covermode=count", "-coverpkg=./...",
			"-coverprofile="+profile, "-run", "^TestLookupPathRecorded$", "./fs")
		cmd.Env = append(os.Environ(), "S3MEDIAFS_CALLPATH_CASE="+which, "S3MEDIAFS_CALLPATH_LOOKUP="+strconv.Itoa(i))
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("recording run: %v\n%s", err, out)
		}
		if counts[i], err = readProfile(profile); err != nil {
			return nil, err
		}
	}
	ran := &coveredBlocks{byFile: map[string][]block{}}
	for key, n := range counts[1] {
		if n <= counts[0][key] {
			continue
		}
		file, rest, _ := strings.Cut(key, ":")
		var b block
		if _, err := fmt.Sscanf(rest, "%d.%d,%d.%d", &b.startLine, &b.startCol, &b.endLine, &b.endCol); err != nil {
			return nil, fmt.Errorf("profile block %q: %v", key, err)
		}
		short := filepath.Base(filepath.Dir(file)) + "/" + filepath.Base(file)
		ran.byFile[short] = append(ran.byFile[short], b)
	}
	return ran, nil
}

// readProfile sums a cover profile's counts by block.
func readProfile(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	counts := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[0] == "mode:" {
			continue
		}
		n, err := strconv.Atoi(fields[2])
		if err != nil {
			return nil, fmt.Errorf("%s: %q: %v", path, sc.Text(), err)
		}
		counts[fields[0]] += n
	}
	return counts, sc.Err()
}
