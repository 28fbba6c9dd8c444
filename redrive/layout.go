package redrive

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HourOf reads the hour a dead-letter blob's path names. Event Grid writes
// {container}/{SUBSCRIPTION}/{y}/{m}/{d}/{h}/{guid}.json, and a namespace subscription
// {container}/{namespace}/{topic}/{subscription}/{y}/{m}/{d}/{h}/{guid}.json, the month, day and hour
// without zero padding: the last four directories that read as a year, month, day and hour are taken. ok
// is false for a path with no date.
func HourOf(name string) (hour time.Time, ok bool) {
	dirs := strings.Split(name, "/")
	if len(dirs) > 0 {
		dirs = dirs[:len(dirs)-1] // the blob's own name
	}
	for i := len(dirs) - 4; i >= 0; i-- {
		y, m, d, h, ok := numbers(dirs[i : i+4])
		if !ok || y < 2000 || y > 9999 || m < 1 || m > 12 || h > 23 {
			continue
		}
		t := time.Date(y, time.Month(m), d, h, 0, 0, 0, time.UTC)
		if d < 1 || t.Day() != d { // 2024/2/30 is no date
			continue
		}
		return t, true
	}
	return time.Time{}, false
}

func numbers(s []string) (y, m, d, h int, ok bool) {
	var n [4]int
	for i, v := range s {
		if v == "" || len(v) > 4 {
			return 0, 0, 0, 0, false
		}
		x, err := strconv.Atoi(v)
		if err != nil || x < 0 {
			return 0, 0, 0, 0, false
		}
		n[i] = x
	}
	return n[0], n[1], n[2], n[3], true
}

// Window is the time filter of a redrive: a blob is in it when the hour its path names overlaps it. A zero
// Since or Until leaves that side open.
type Window struct {
	Since, Until time.Time
}

// Contains reports whether the blob of that name is in the window; a blob whose path has no date always is.
func (w Window) Contains(name string) bool {
	hour, ok := HourOf(name)
	if !ok {
		return true
	}
	end := hour.Add(time.Hour)
	return (w.Since.IsZero() || end.After(w.Since)) && (w.Until.IsZero() || !hour.After(w.Until))
}

// ParseTime reads --since and --until: RFC 3339, or a date (YYYY-MM-DD, UTC), which as the end of a
// window (until) covers that whole day.
func ParseTime(s string, until bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-12-01T10:00:00Z) nor a date (2026-12-01)", s)
	}
	if until {
		return d.Add(24*time.Hour - time.Nanosecond), nil
	}
	return d, nil
}
