package main

import (
	"fmt"
	"strconv"
	"strings"

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
