package cloudevents

import "net/http"

// Trace is a W3C trace context (https://www.w3.org/TR/trace-context/): the traceparent and tracestate
// of the CloudEvents distributed-tracing extension, or of HTTP headers. Its zero value is no context.
type Trace struct {
	Parent string
	State  string
}

// TraceOf returns the context of a traceparent and tracestate, or none when traceparent is not well
// formed: a malformed context is dropped, never an error (and a tracestate means nothing without its
// traceparent).
func TraceOf(parent, state string) Trace {
	if !ValidTraceParent(parent) {
		return Trace{}
	}
	return Trace{Parent: parent, State: state}
}

// TraceOfHeader returns the context of a request's traceparent and tracestate headers.
func TraceOfHeader(h http.Header) Trace {
	return TraceOf(h.Get("Traceparent"), h.Get("Tracestate"))
}

// Or returns t when it holds a context, else fallback.
func (t Trace) Or(fallback Trace) Trace {
	if t.Parent != "" {
		return t
	}
	return fallback
}

// ValidTraceParent reports whether s is a traceparent as W3C Trace Context level 1 defines it:
// version-traceid-parentid-flags in lower-case hex, 2-32-16-2 digits, neither id all zeros, and not the
// forbidden version ff. A higher version may carry more fields after the flags.
func ValidTraceParent(s string) bool {
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return false
	}
	version, traceID, parentID, flags := s[0:2], s[3:35], s[36:52], s[53:55]
	if !lowerHex(version) || !lowerHex(traceID) || !lowerHex(parentID) || !lowerHex(flags) || version == "ff" {
		return false
	}
	if version == "00" && len(s) != 55 {
		return false
	}
	if len(s) > 55 && s[55] != '-' {
		return false
	}
	return !allZeros(traceID) && !allZeros(parentID)
}

func lowerHex(s string) bool {
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func allZeros(s string) bool {
	for i := range len(s) {
		if s[i] != '0' {
			return false
		}
	}
	return true
}
