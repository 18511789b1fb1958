package directory

import (
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/go-ldap/ldap/v3"
)

// Server is one directory server, parsed from an RFC 4516 LDAP URL.
type Server struct {
	// URL is the URL as configured; it names the server in errors and is
	// handed to the credentials callback.
	URL string
	// TLS is true for ldaps:// (TLS from the first byte).
	TLS bool
	// Addr is host:port (port 389 for ldap://, 636 for ldaps:// when the
	// URL names none).
	Addr string
	// Host is the host name without the port, used for TLS verification.
	Host string
	// BaseDN is the search base from the URL's path ("" = the root).
	BaseDN string
	// Scope is ldap.ScopeBaseObject, ScopeSingleLevel or
	// ScopeWholeSubtree (the default when the URL gives none).
	Scope int
	// Filter is the URL's filter, or "" when it has none. A lookup
	// searches for entries matching both it and the address.
	Filter string
}

// ParseURL parses an RFC 4516 URL: ldap[s]://host[:port]/[dn[?attrs[?scope[?filter[?exts]]]]].
// The host is required (there is no default server). The attributes part
// is ignored (the package asks for the certificate attributes it knows),
// scope is "base", "one" or "sub" (default "sub"), the filter must be a
// valid LDAP filter, and a critical extension ("!name") is refused since
// none is supported.
func ParseURL(raw string) (*Server, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: %w", raw, err)
	}
	s := &Server{URL: raw, Scope: ldap.ScopeWholeSubtree}
	var port string
	switch strings.ToLower(u.Scheme) {
	case "ldap":
		port = "389"
	case "ldaps":
		port, s.TLS = "636", true
	default:
		return nil, fmt.Errorf("directory: %q: not an ldap:// or ldaps:// URL", raw)
	}
	if u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return nil, fmt.Errorf("directory: %q: user information, fragments and opaque URLs are not allowed", raw)
	}
	s.Host = u.Hostname()
	if s.Host == "" {
		return nil, fmt.Errorf("directory: %q: no host", raw)
	}
	if p := u.Port(); p != "" {
		port = p
	}
	s.Addr = net.JoinHostPort(s.Host, port)
	s.BaseDN = strings.TrimPrefix(u.Path, "/")
	if s.BaseDN != "" {
		if _, err := ldap.ParseDN(s.BaseDN); err != nil {
			return nil, fmt.Errorf("directory: %q: base DN: %w", raw, err)
		}
	}
	if u.RawQuery == "" {
		return s, nil
	}
	parts := strings.Split(u.RawQuery, "?")
	if len(parts) > 4 {
		return nil, fmt.Errorf("directory: %q: too many '?' parts", raw)
	}
	field := func(i int) (string, error) {
		if i >= len(parts) {
			return "", nil
		}
		return url.PathUnescape(parts[i])
	}
	// parts[0] is the attribute list: ignored.
	scope, err := field(1)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: scope: %w", raw, err)
	}
	switch strings.ToLower(scope) {
	case "", "sub":
		s.Scope = ldap.ScopeWholeSubtree
	case "one":
		s.Scope = ldap.ScopeSingleLevel
	case "base":
		s.Scope = ldap.ScopeBaseObject
	default:
		return nil, fmt.Errorf("directory: %q: scope %q is not base, one or sub", raw, scope)
	}
	filter, err := field(2)
	if err != nil {
		return nil, fmt.Errorf("directory: %q: filter: %w", raw, err)
	}
	if filter != "" {
		if !strings.HasPrefix(filter, "(") {
			filter = "(" + filter + ")"
		}
		if _, err := ldap.CompileFilter(filter); err != nil {
			return nil, fmt.Errorf("directory: %q: filter: %w", raw, err)
		}
		s.Filter = filter
	}
	if len(parts) == 4 {
		for _, ext := range strings.Split(parts[3], ",") {
			if strings.HasPrefix(ext, "!") {
				return nil, fmt.Errorf("directory: %q: critical extension %q is not supported", raw, ext)
			}
		}
	}
	return s, nil
}

// filter returns the search filter for one address on s.
func (s *Server) filter(email string) string {
	e := ldap.EscapeFilter(email)
	f := "(|(mail=" + e + ")(proxyAddresses=smtp:" + e + "))"
	if s.Filter != "" {
		f = "(&" + s.Filter + f + ")"
	}
	return f
}
