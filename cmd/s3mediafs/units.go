package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// ByteSize is a size in bytes written as a number or with units
// ("50GiB", "500 MB", "1.5TiB").
type ByteSize int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseBytes(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = ByteSize(v)
	return nil
}

func parseBytes(s string) (int64, error) {
	v, err := humanize.ParseBytes(strings.TrimSpace(s))
	if err != nil || v > 1<<62 {
		return 0, fmt.Errorf("%q is not a size (examples: 1073741824, 50GiB, 500MB)", s)
	}
	return int64(v), nil
}

// FreeSpace is a free-space floor: bytes ("10GiB") or a percentage of the
// filesystem ("5%").
type FreeSpace struct {
	Bytes   int64
	Percent float64
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (f *FreeSpace) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseFreeSpace(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*f = v
	return nil
}

func parseFreeSpace(s string) (FreeSpace, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || v < 0 || v >= 100 {
			return FreeSpace{}, fmt.Errorf("%q is not a percentage below 100%%", s)
		}
		return FreeSpace{Percent: v}, nil
	}
	v, err := parseBytes(s)
	return FreeSpace{Bytes: v}, err
}

func (f FreeSpace) String() string {
	if f.Percent > 0 {
		return strconv.FormatFloat(f.Percent, 'f', -1, 64) + "%"
	}
	return humanize.IBytes(uint64(f.Bytes))
}

// Mode is permission bits written in octal ("0640", "640" or "0o640"),
// as chmod takes them: YAML would read 0640 as a decimal number.
type Mode uint32

// UnmarshalYAML implements yaml.Unmarshaler.
func (m *Mode) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseMode(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*m = v
	return nil
}

func parseMode(s string) (Mode, error) {
	t := strings.TrimPrefix(strings.TrimPrefix(strings.TrimSpace(s), "0o"), "0O")
	v, err := strconv.ParseUint(t, 8, 32)
	if err != nil || v > 0o7777 {
		return 0, fmt.Errorf("%q is not permission bits in octal (examples: 0640, 0750)", s)
	}
	return Mode(v), nil
}

// Duration is a length of time written as Go writes one ("90s", "1m30s",
// "72h"), or as a plain number of seconds ("0", "30", "1.5"), the way the
// README's tables and fstab options give it.
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// D is the duration as the time package uses it.
func (d Duration) D() time.Duration { return time.Duration(d) }

func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if secs, err := strconv.ParseFloat(s, 64); err == nil {
		if math.IsNaN(secs) || math.IsInf(secs, 0) || math.Abs(secs) > math.MaxInt64/float64(time.Second) {
			return 0, fmt.Errorf("%q is not a duration (examples: 0, 30, 90s, 1m30s, 72h)", s)
		}
		return time.Duration(secs * float64(time.Second)), nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: 0, 30, 90s, 1m30s, 72h)", s)
	}
	return v, nil
}
