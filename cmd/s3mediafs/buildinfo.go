package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is stamped by scripts/package.sh with -ldflags "-X main.version=…";
// a plain go build leaves it empty and the module version is used.
var version string

// versionLine says which build this is: the version, the commit it was
// built from (with +dirty for uncommitted changes) and the Go version.
// The commit and Go version come from the build information the Go
// toolchain embeds, so no build script can get them wrong.
func versionLine(stamped string, info *debug.BuildInfo) string {
	v, commit, goVersion := stamped, "unknown", runtime.Version()
	if info != nil {
		goVersion = info.GoVersion
		if v == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			v = info.Main.Version
		}
		dirty := ""
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
				if len(commit) > 12 {
					commit = commit[:12]
				}
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if commit != "unknown" {
			commit += dirty
		}
	}
	if v == "" {
		v = "dev"
	}
	return fmt.Sprintf("s3mediafs %s (commit %s, %s)", v, commit, goVersion)
}

// buildVersion is the version alone, as status reports it.
func buildVersion() string {
	if version != "" {
		return version
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}

// currentVersionLine is versionLine for this binary.
func currentVersionLine() string {
	info, _ := debug.ReadBuildInfo()
	return versionLine(version, info)
}
