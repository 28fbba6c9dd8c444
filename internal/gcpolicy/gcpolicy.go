// Package gcpolicy sets the garbage collector for a service whose live heap is small: a few MB of
// requests in flight, collected dozens of times a second at Go's default GOGC of 100. It raises the GC
// target so that such a heap is not collected constantly, and takes the memory limit from the
// container's cgroup, so that a larger target never takes the process past its limit: as the heap nears
// GOMEMLIMIT, Go collects harder instead of the container being OOM-killed. With no cgroup limit (a
// laptop, a VM), the limit is a share of the machine's memory, so that the heap stays bounded there too.
// GOGC and GOMEMLIMIT set by the user always win.
package gcpolicy

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

const (
	// GOGC is the GC target the bridge sets, unless the user sets GOGC, when a memory limit is in force
	// (the cgroup's or the user's): the heap may grow to five times the live heap before a collection,
	// and the limit bounds the total, Go collecting harder as the heap nears it.
	GOGC = 400
	// GOGCUnlimited is the target without a container's or the user's memory limit (the machine's share
	// bounds the heap, far above what the bridge needs): three times the live heap, which keeps the
	// resident set of a busy bridge under 96 MiB with nothing else to bound it.
	GOGCUnlimited = 200
	// LimitRatio is the share of the cgroup's memory limit given to GOMEMLIMIT; the rest is for what Go
	// does not count (thread stacks outside the heap, the binary, fragmentation).
	LimitRatio = 0.9
	// MachineRatio is the share of the machine's memory given to GOMEMLIMIT when no cgroup limits the
	// process: the rest is for the page cache the embedded server's store reads through, and for the
	// machine's other processes. The heap's target stays GOGCUnlimited; the limit only bounds it.
	MachineRatio = 0.5
)

// Source says where a setting came from.
type Source string

const (
	FromUser    Source = "user"    // the GOGC or GOMEMLIMIT environment variable
	FromCgroup  Source = "cgroup"  // LimitRatio of the container's memory limit
	FromMachine Source = "machine" // MachineRatio of the machine's memory, with no cgroup limit
	FromDefault Source = "default" // the bridge's GOGC
	Unset       Source = "none"    // no memory limit: none set, and neither the cgroup nor the machine known
)

// Policy is what Decide chose. MemoryLimit is in bytes, math.MaxInt64 for none.
type Policy struct {
	GOGC        int
	GOGCFrom    Source
	MemoryLimit int64
	LimitFrom   Source
}

// Decide chooses the settings from the environment (lookup is os.LookupEnv), the memory limit that
// cgroup reports (memlimit.FromCgroup; memlimit.ErrNoLimit when there is none), and the machine's memory
// (memlimit.FromSystem). It changes nothing.
func Decide(lookup func(string) (string, bool), cgroup, machine memlimit.Provider) (Policy, error) {
	p, err := decide(lookup, cgroup)
	if p.LimitFrom == Unset {
		if total, merr := machine(); merr == nil && total > 0 && total < math.MaxInt64 {
			p.MemoryLimit, p.LimitFrom = int64(float64(total)*MachineRatio), FromMachine
		}
	}
	if p.GOGCFrom == FromDefault && (p.LimitFrom == FromCgroup || p.LimitFrom == FromUser) {
		p.GOGC = GOGC
	}
	return p, err
}

func decide(lookup func(string) (string, bool), cgroup memlimit.Provider) (Policy, error) {
	p := Policy{GOGC: GOGCUnlimited, GOGCFrom: FromDefault, MemoryLimit: math.MaxInt64, LimitFrom: Unset}
	if v, ok := lookup("GOGC"); ok {
		// The runtime has applied it already; read back what it made of it.
		p.GOGC, p.GOGCFrom = debug.SetGCPercent(-1), FromUser
		debug.SetGCPercent(p.GOGC)
		if v == "off" {
			p.GOGC = -1
		} else if _, err := strconv.Atoi(v); err != nil {
			return p, fmt.Errorf("GOGC=%q is not a number or off", v)
		}
	}
	if _, ok := lookup("GOMEMLIMIT"); ok {
		p.MemoryLimit, p.LimitFrom = debug.SetMemoryLimit(-1), FromUser
		return p, nil
	}
	limit, err := memlimit.ApplyRatio(cgroup, LimitRatio)()
	switch {
	case errors.Is(err, memlimit.ErrNoLimit):
		return p, nil
	case err != nil:
		return p, fmt.Errorf("reading the cgroup memory limit: %w", err)
	case limit >= math.MaxInt64:
		return p, nil
	}
	p.MemoryLimit, p.LimitFrom = int64(limit), FromCgroup
	return p, nil
}

// Apply sets what the bridge decided; what came from the user is already in force.
func (p Policy) Apply() {
	if p.GOGCFrom == FromDefault {
		debug.SetGCPercent(p.GOGC)
	}
	if p.LimitFrom == FromCgroup || p.LimitFrom == FromMachine {
		debug.SetMemoryLimit(p.MemoryLimit)
	}
}

// Set decides from the process's environment, cgroup and machine, and applies the result.
func Set(lookup func(string) (string, bool)) (Policy, error) {
	p, err := Decide(lookup, memlimit.FromCgroup, memlimit.FromSystem)
	p.Apply()
	return p, err
}
