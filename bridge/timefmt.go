package bridge

import (
	"strings"
	"time"
)

// NormalizeTime rewrites an event time as RFC 3339 in UTC ending in Z, keeping the number of fraction
// digits it was sent with (Azure sends 7 or 9). It accepts what Azure really sends: offsets such as
// +00:00, and no zone at all, which is taken as UTC. ok is false when s is not such a time.
func NormalizeTime(s string) (normalized string, ok bool) {
	if canonical(s) {
		return s, true
	}
	return normalizeTime(s)
}

// canonical reports whether s is already normal: 2006-01-02T15:04:05[.fraction]Z with at most nine
// fraction digits, and a real date and time of day. Most of what Azure sends is, and needs no parsing.
func canonical(s string) bool {
	const secondsEnd = len("2006-01-02T15:04:05")
	if len(s) < secondsEnd+1 || len(s) > secondsEnd+11 || s[len(s)-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return false
	}
	num := func(i, n int) int {
		v := 0
		for _, c := range []byte(s[i : i+n]) {
			if c < '0' || c > '9' {
				return -1
			}
			v = 10*v + int(c-'0')
		}
		return v
	}
	year, month, day := num(0, 4), num(5, 2), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	if year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 || sec < 0 || sec > 59 {
		return false
	}
	if time.Date(year, time.Month(month), day, 0, 0, 0, 0, time.UTC).Day() != day {
		return false // the 30th of February
	}
	if frac := s[secondsEnd : len(s)-1]; frac != "" {
		return len(frac) >= 2 && frac[0] == '.' && num(secondsEnd+1, len(frac)-1) >= 0
	}
	return true
}

// normalizeTime is NormalizeTime for times that are not already normal.
func normalizeTime(s string) (normalized string, ok bool) {
	s = strings.TrimSpace(s)
	if len(s) < len("2006-01-02T15:04:05") {
		return "", false
	}
	if s[10] == 't' || s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	if strings.HasSuffix(s, "z") {
		s = s[:len(s)-1] + "Z"
	}
	digits := fractionDigits(s)
	if digits < 0 {
		return "", false
	}
	var t time.Time
	var err error
	if zoned(s) {
		t, err = time.Parse(time.RFC3339, s)
		if err != nil {
			t, err = time.Parse("2006-01-02T15:04:05Z0700", s)
		}
	} else {
		t, err = time.Parse("2006-01-02T15:04:05", s)
	}
	if err != nil {
		return "", false
	}
	if digits > 9 {
		digits = 9
	}
	layout := "2006-01-02T15:04:05"
	if digits > 0 {
		layout += "." + strings.Repeat("0", digits)
	}
	return t.UTC().Format(layout) + "Z", true
}

// fractionDigits counts the digits after the seconds' decimal point; -1 if the point has none.
func fractionDigits(s string) int {
	const secondsEnd = len("2006-01-02T15:04:05")
	if len(s) == secondsEnd || s[secondsEnd] != '.' {
		return 0
	}
	n := 0
	for _, c := range s[secondsEnd+1:] {
		if c < '0' || c > '9' {
			break
		}
		n++
	}
	if n == 0 {
		return -1
	}
	return n
}

// zoned reports whether s ends in a zone: Z, or an offset after the time of day.
func zoned(s string) bool {
	if strings.HasSuffix(s, "Z") {
		return true
	}
	tod := s[len("2006-01-02T"):]
	return strings.ContainsAny(tod, "+-")
}
