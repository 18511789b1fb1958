package aia

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testldap"
)

// TestLDAP fetches the intermediate from a real slapd, where it is the
// cACertificate;binary of a pkiCA entry, as CAs publish it.
func TestLDAP(t *testing.T) {
	f := getFixture(t)
	srv := testldap.Start(t, false)
	const dn = "cn=Smimed Test Intermediate," + testldap.Suffix
	srv.Add(t, dn, map[string][]string{
		"objectClass":          {"organizationalRole", "pkiCA"},
		"cn":                   {"Smimed Test Intermediate"},
		"cACertificate;binary": {string(f.interDER)},
	})
	const emptyDN = "cn=Empty CA," + testldap.Suffix
	srv.Add(t, emptyDN, map[string][]string{
		"objectClass": {"organizationalRole", "pkiCA"}, "cn": {"Empty CA"},
	})
	base := "ldap://" + srv.Addr + "/"
	entry := base + url.PathEscape(dn)
	dead := "ldap://" + testldap.FreeAddr(t) + "/" + url.PathEscape(dn) + "?cACertificate;binary"

	tests := []struct {
		name string
		urls []string
		want []error // nil: found
	}{
		{"attribute named with ;binary", []string{entry + "?cACertificate;binary"}, nil},
		{"attribute named without ;binary", []string{entry + "?cACertificate"}, nil},
		{"no attribute named", []string{entry}, nil},
		{"scope and filter ignored", []string{entry + "?cACertificate;binary?sub?(objectClass=*)"}, nil},
		{"DN with literal spaces", []string{base + dn + "?cACertificate;binary"}, nil},
		{"dead server then slapd", []string{dead, entry + "?cACertificate;binary"}, nil},
		{"entry without the attribute", []string{base + url.PathEscape(emptyDN) + "?cACertificate;binary"}, []error{ErrNotFound}},
		{"no such entry", []string{base + url.PathEscape("cn=Nobody,"+testldap.Suffix)}, []error{ErrNotFound}},
		{"critical extension", []string{entry + "?cACertificate;binary?base??!e-bindname=cn=x"}, []error{ErrUnsupported}},
		{"dead server", []string{dead}, []error{ErrNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fe := &Fetcher{Timeout: 3 * time.Second}
			got, err := fe.Issuers(context.Background(), f.leaf(t, nil, tt.urls...))
			if tt.want == nil {
				wantIssuer(t, got, err)
				return
			}
			t.Logf("error: %v", err)
			wantErrs(t, got, err, tt.want...)
		})
	}

	// Cached: found again with slapd stopped.
	fe := &Fetcher{CacheDir: t.TempDir(), Timeout: 2 * time.Second}
	u := entry + "?cACertificate;binary"
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	srv.Stop(t)
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	wantIssuerFrom(t, &Fetcher{CacheDir: fe.CacheDir}, f.leaf(t, nil, u))
	// And without the cache, the stopped server is a failure naming the URL.
	_, err := (&Fetcher{Timeout: 2 * time.Second}).Issuers(context.Background(), f.leaf(t, nil, u))
	var ue *URLError
	if !errors.As(err, &ue) || ue.URL != u || !strings.Contains(err.Error(), u) {
		t.Fatalf("error %v does not name %s", err, u)
	}
}

// TestLDAPHang: an LDAP server that accepts the connection and never
// answers is given up when the time budget ends.
func TestLDAPHang(t *testing.T) {
	f := getFixture(t)
	addr := silentListener(t)
	fe := &Fetcher{Timeout: 300 * time.Millisecond}
	start := time.Now()
	got, err := fe.Issuers(context.Background(), f.leaf(t, nil, "ldap://"+addr+"/cn=CA?cACertificate;binary"))
	wantErrs(t, got, err, ErrNotFound, context.DeadlineExceeded)
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v with a 300ms timeout", took)
	}
}
