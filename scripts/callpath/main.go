// Command callpath measures how far a reader travels to follow one call
// through this module: from a root function it walks every static call
// into the module's own code, depth first, each function read once and
// its call sites in source order, the bodies of its closures read where
// they stand. It prints the files in the order the reader enters them and
// counts the files visited and the returns to a file already left (every
// entry into a file seen before, whether by returning from a callee or by
// calling into it again). Calls through interfaces and function values
// (the store, go-fuse's dispatch) are not followed: a reader cannot see
// where they go from the code either.
//
// With -case, only the calls one real lookup makes are followed: the
// script runs fs's TestLookupPathRecorded twice under -coverprofile (as
// root: it mounts), with and without one LOOKUP of a media file, and a
// call site counts when its block ran more often with the lookup. The
// case is warm (the index knows the name) or cold (only the store has
// it). Without -case every static call is followed.
//
//	go run ./scripts/callpath -case warm   # what a lookup of a known name reads
//	go run ./scripts/callpath -case cold   # of a name only the store has
//	go run ./scripts/callpath              # everything a lookup could reach
//	go run ./scripts/callpath -root '(*github.com/s3mediafs/s3mediafs/fs.node).Open'
package main

import (
	"flag"
	"fmt"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/tools/go/packages"
	"golang.org/x/tools/go/ssa"
	"golang.org/x/tools/go/ssa/ssautil"
)

const module = "github.com/s3mediafs/s3mediafs"

func main() {
	root := flag.String("root", "(*"+module+"/fs.kernelFS).Lookup,(*"+module+"/fs.node).Lookup",
		"the functions to start from, in order, as ssa prints them (go-fuse's dispatch between them is not followed)")
	which := flag.String("case", "", "warm or cold: follow only the calls one such lookup makes")
	verbose := flag.Bool("v", false, "print every function read, with its file")
	flag.Parse()
	var ran *coveredBlocks
	if *which != "" {
		var err error
		if ran, err = recordLookup(*which); err != nil {
			fail(err)
		}
	}
	cfg := &packages.Config{Mode: packages.LoadAllSyntax}
	pkgs, err := packages.Load(cfg, module+"/...")
	if err != nil {
		fail(err)
	}
	if packages.PrintErrors(pkgs) > 0 {
		fail(fmt.Errorf("the module does not load"))
	}
	prog, _ := ssautil.AllPackages(pkgs, ssa.InstantiateGenerics)
	prog.Build()
	byName := map[string]*ssa.Function{}
	for fn := range ssautil.AllFunctions(prog) {
		byName[fn.String()] = fn
	}
	w := &walk{fset: prog.Fset, read: map[*ssa.Function]bool{}, ran: ran, verbose: *verbose}
	for _, name := range strings.Split(*root, ",") {
		fn := byName[name]
		if fn == nil {
			fail(fmt.Errorf("no function %s", name))
		}
		w.function(fn)
	}
	w.report()
}

// walk is one reader's path through the code.
type walk struct {
	fset    *token.FileSet
	read    map[*ssa.Function]bool
	ran     *coveredBlocks // nil: every call site counts
	files   []string       // files in the order entered, consecutive repeats folded
	verbose bool
	depth   int
}

// ours reports whether fn is the module's own, non-test code.
func ours(fn *ssa.Function) bool {
	if fn.Pkg == nil && fn.Origin() != nil {
		fn = fn.Origin()
	}
	for fn.Parent() != nil {
		fn = fn.Parent()
	}
	if fn.Pkg == nil || !strings.HasPrefix(fn.Pkg.Pkg.Path(), module) {
		return false
	}
	return !strings.HasSuffix(fn.Prog.Fset.Position(fn.Pos()).Filename, "_test.go")
}

func (w *walk) file(fn *ssa.Function) string { return w.fset.Position(fn.Pos()).Filename }

func (w *walk) enter(file string) {
	if n := len(w.files); n == 0 || w.files[n-1] != file {
		w.files = append(w.files, file)
	}
}

// function reads fn: its file is entered, then each call site in source
// order leads into its callee, after which the reader is back in fn's file.
func (w *walk) function(fn *ssa.Function) {
	if w.read[fn] || !ours(fn) {
		return
	}
	w.read[fn] = true
	file := w.file(fn)
	w.enter(file)
	if w.verbose {
		fmt.Printf("%s%s  %s\n", strings.Repeat("  ", w.depth), fn.String(), rel(file))
	}
	w.depth++
	defer func() { w.depth-- }()
	for _, callee := range w.callees(fn) {
		if w.read[callee] || !ours(callee) {
			continue
		}
		w.function(callee)
		w.enter(file)
	}
}

// callees are the static callees of fn and of the closures written in it,
// in the order their call sites appear in the source.
func (w *walk) callees(fn *ssa.Function) []*ssa.Function {
	type site struct {
		pos    token.Pos
		callee *ssa.Function
	}
	var sites []site
	var gather func(f *ssa.Function)
	gather = func(f *ssa.Function) {
		for _, b := range f.Blocks {
			for _, in := range b.Instrs {
				if call, ok := in.(ssa.CallInstruction); ok && w.ran.has(w.fset.Position(call.Pos())) {
					if c := call.Common().StaticCallee(); c != nil && c.Parent() == nil {
						sites = append(sites, site{call.Pos(), c})
					}
				}
			}
		}
		for _, anon := range f.AnonFuncs {
			w.read[anon] = true
			gather(anon)
		}
	}
	gather(fn)
	sort.SliceStable(sites, func(i, j int) bool { return sites[i].pos < sites[j].pos })
	out := make([]*ssa.Function, 0, len(sites))
	for _, s := range sites {
		out = append(out, s.callee)
	}
	return out
}

func (w *walk) report() {
	seen := map[string]int{}
	returns := 0
	for _, f := range w.files {
		if seen[f] > 0 {
			returns++
		}
		seen[f]++
	}
	fmt.Println("files in the order entered:")
	for _, f := range w.files {
		fmt.Println("  " + rel(f))
	}
	names := make([]string, 0, len(seen))
	for f := range seen {
		names = append(names, f)
	}
	sort.Slice(names, func(i, j int) bool { return seen[names[i]] > seen[names[j]] })
	fmt.Println("entries per file:")
	for _, f := range names {
		fmt.Printf("  %3d  %s\n", seen[f], rel(f))
	}
	fmt.Printf("functions read: %d\nfiles visited: %d\nreturns to a file already left: %d\n", len(w.read), len(seen), returns)
}

func rel(f string) string {
	if wd, err := os.Getwd(); err == nil {
		if r, err := filepath.Rel(wd, f); err == nil && !strings.HasPrefix(r, "..") {
			return r
		}
	}
	return f
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "callpath:", err)
	os.Exit(1)
}
