// Package lookup holds the rules of registry lookups (DESIGN §4): which registry hosts the bridge may ask,
// and what a fetched manifest says an event is about.
package lookup

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Hosts are the registry hosts lookups may go to (BRIDGE_REGISTRY_HOSTS): host[:port] patterns, "*."
// standing for exactly one leading DNS label. An event names its registry's host itself, so this list is
// all that keeps a forged event from making the bridge fetch an arbitrary URL.
type Hosts struct {
	patterns []hostPattern
}

type hostPattern struct {
	// suffix is the host in lower case, without its "*." when wild.
	suffix string
	wild   bool
	// port is the pattern's port; "" matches no port and 443.
	port string
}

// DefaultHosts are Azure Container Registry's login servers in Azure's public, China and US Government clouds.
var DefaultHosts = []string{"*.azurecr.io", "*.azurecr.cn", "*.azurecr.us"}

// ParseHosts reads patterns such as "*.azurecr.io" or "registry.internal:5443".
func ParseHosts(patterns []string) (Hosts, error) {
	var h Hosts
	for _, raw := range patterns {
		p := strings.TrimSpace(raw)
		host, port := p, ""
		if i := strings.LastIndexByte(p, ':'); i >= 0 {
			host, port = p[:i], p[i+1:]
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
				return Hosts{}, fmt.Errorf("registry host pattern %q: %q is not a port", raw, port)
			}
		}
		wild := strings.HasPrefix(host, "*.")
		host = strings.ToLower(strings.TrimPrefix(host, "*."))
		if !dnsName(host) {
			return Hosts{}, fmt.Errorf("registry host pattern %q: want a DNS name, optionally after *. and before :port", raw)
		}
		h.patterns = append(h.patterns, hostPattern{suffix: host, wild: wild, port: port})
	}
	return h, nil
}

// Allows reports whether a registry host as an event names it (request.host: a host, optionally with a
// port) matches a pattern. Hosts compare case-insensitively; a pattern with a port matches that port
// only, one without matches no port or 443; "*." matches one label, not two, and not none.
func (h Hosts) Allows(hostport string) bool {
	host, port := hostport, ""
	if strings.Contains(hostport, ":") {
		var err error
		if host, port, err = net.SplitHostPort(hostport); err != nil {
			return false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port != strconv.Itoa(n) {
			return false
		}
	}
	host = strings.ToLower(host)
	if !dnsName(host) {
		return false // an address, a path, user info, anything that is not a plain DNS name
	}
	for _, p := range h.patterns {
		switch {
		case p.port == "" && port != "" && port != "443", p.port != "" && port != p.port:
			continue
		case !p.wild && host == p.suffix:
			return true
		case p.wild:
			label, rest, ok := strings.Cut(host, ".")
			if ok && label != "" && rest == p.suffix {
				return true
			}
		}
	}
	return false
}

// dnsName reports whether s is a DNS name: dot-separated labels of letters, digits and hyphens, none
// empty, none starting or ending with a hyphen.
func dnsName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
