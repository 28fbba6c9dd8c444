package gcpolicy

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cgroupFile is a provider reading a cgroup v2 memory.max file as the kernel writes it: bytes, or "max".
func cgroupFile(t *testing.T, content string) memlimit.Provider {
	path := filepath.Join(t.TempDir(), "memory.max")
	require.NoError(t, os.WriteFile(path, []byte(content+"\n"), 0o600))
	return func() (uint64, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		s := strings.TrimSpace(string(b))
		if s == "max" {
			return 0, memlimit.ErrNoLimit
		}
		return strconv.ParseUint(s, 10, 64)
	}
}

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// keepGC restores the process's GC settings after a test that changes them.
func keepGC(t *testing.T) {
	gogc, limit := debug.SetGCPercent(-1), debug.SetMemoryLimit(-1)
	debug.SetGCPercent(gogc)
	t.Cleanup(func() { debug.SetGCPercent(gogc); debug.SetMemoryLimit(limit) })
}

func TestDecide(t *testing.T) {
	keepGC(t)
	for _, tc := range []struct {
		name      string
		cgroup    string
		vars      map[string]string
		runtime   func() // what the runtime made of the user's variables at start-up
		machine   memlimit.Provider
		want      Policy
		wantError string
	}{
		{name: "a 256 MiB container", cgroup: "268435456",
			want: Policy{GOGC: 400, GOGCFrom: FromDefault, MemoryLimit: 241591910, LimitFrom: FromCgroup}},
		{name: "a 1 GiB container", cgroup: "1073741824",
			want: Policy{GOGC: 400, GOGCFrom: FromDefault, MemoryLimit: 966367641, LimitFrom: FromCgroup}},
		{name: "no container limit: half the machine", cgroup: "max",
			want: Policy{GOGC: 200, GOGCFrom: FromDefault, MemoryLimit: 4 << 30, LimitFrom: FromMachine}},
		{name: "no limit known at all", cgroup: "max", machine: func() (uint64, error) { return 0, memlimit.ErrNoLimit },
			want: Policy{GOGC: 200, GOGCFrom: FromDefault, MemoryLimit: math.MaxInt64, LimitFrom: Unset}},
		{name: "the user's GOMEMLIMIT wins over the cgroup", cgroup: "268435456",
			vars: map[string]string{"GOMEMLIMIT": "100MiB"}, runtime: func() { debug.SetMemoryLimit(100 << 20) },
			want: Policy{GOGC: 400, GOGCFrom: FromDefault, MemoryLimit: 100 << 20, LimitFrom: FromUser}},
		{name: "the user's GOGC wins", cgroup: "268435456",
			vars: map[string]string{"GOGC": "150"}, runtime: func() { debug.SetGCPercent(150) },
			want: Policy{GOGC: 150, GOGCFrom: FromUser, MemoryLimit: 241591910, LimitFrom: FromCgroup}},
		{name: "GOGC=off with the user's limit", cgroup: "max",
			vars:    map[string]string{"GOGC": "off", "GOMEMLIMIT": "48MiB"},
			runtime: func() { debug.SetGCPercent(-1); debug.SetMemoryLimit(48 << 20) },
			want:    Policy{GOGC: -1, GOGCFrom: FromUser, MemoryLimit: 48 << 20, LimitFrom: FromUser}},
		{name: "an unreadable cgroup keeps the default GOGC and the machine's share", cgroup: "garbage",
			want:      Policy{GOGC: 200, GOGCFrom: FromDefault, MemoryLimit: 4 << 30, LimitFrom: FromMachine},
			wantError: "reading the cgroup memory limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if tc.runtime != nil {
				tc.runtime()
			}
			machine := tc.machine
			if machine == nil {
				machine = memlimit.Limit(8 << 30)
			}
			got, err := Decide(env(tc.vars), cgroupFile(t, tc.cgroup), machine)
			if tc.wantError != "" {
				require.ErrorContains(t, err, tc.wantError)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.want, got)

			got.Apply()
			gogc := debug.SetGCPercent(-1)
			debug.SetGCPercent(gogc)
			assert.Equal(t, tc.want.GOGC, gogc, "GOGC in force")
			assert.Equal(t, tc.want.MemoryLimit, debug.SetMemoryLimit(-1), "GOMEMLIMIT in force")
		})
	}
}

func TestDecideRefusesABadGOGC(t *testing.T) {
	keepGC(t)
	_, err := Decide(env(map[string]string{"GOGC": "lots"}), memlimit.Limit(1<<30), memlimit.Limit(8<<30))
	require.ErrorContains(t, err, `GOGC="lots"`)
}

// On this machine's own cgroup and memory, through the library's readers: whatever the cgroup reports, the
// limit is 90 % of it, or half the machine's memory.
func TestSetOnThisMachine(t *testing.T) {
	keepGC(t)
	cg, cgErr := memlimit.FromCgroup()
	p, err := Set(env(nil))
	switch {
	case errors.Is(cgErr, memlimit.ErrNoLimit):
		require.NoError(t, err)
		total, err := memlimit.FromSystem()
		require.NoError(t, err)
		assert.Equal(t, FromMachine, p.LimitFrom)
		assert.Equal(t, int64(float64(total)*MachineRatio), p.MemoryLimit)
	case cgErr != nil:
		require.Error(t, err)
	default:
		require.NoError(t, err)
		assert.Equal(t, FromCgroup, p.LimitFrom)
		assert.Equal(t, int64(float64(cg)*LimitRatio), p.MemoryLimit)
	}
	want := GOGC
	if p.LimitFrom == FromMachine {
		want = GOGCUnlimited
	}
	assert.Equal(t, want, debug.SetGCPercent(want))
	t.Logf("cgroup limit %d (%v): %+v", cg, cgErr, p)
}
