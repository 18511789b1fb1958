package aia

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/smime/cms"
)

// wantIssuer checks that got is exactly the fixture's intermediate.
func wantIssuer(t *testing.T, got []*x509.Certificate, err error) {
	t.Helper()
	f := getFixture(t)
	if err != nil {
		t.Fatalf("Issuers: %v", err)
	}
	if len(got) != 1 || !got[0].Equal(f.inter.Cert) {
		var names []string
		for _, c := range got {
			names = append(names, c.Subject.String())
		}
		t.Fatalf("Issuers returned %d certificates %q, want the intermediate only", len(got), names)
	}
}

// wantIssuerFrom checks that fe finds exactly the intermediate for cert.
func wantIssuerFrom(t *testing.T, fe *Fetcher, cert *x509.Certificate) {
	t.Helper()
	got, err := fe.Issuers(context.Background(), cert)
	wantIssuer(t, got, err)
}

// wantErrs checks that err wraps every one of want.
func wantErrs(t *testing.T, got []*x509.Certificate, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Issuers returned %d certificates and no error, want %v", len(got), want)
	}
	if len(got) != 0 {
		t.Fatalf("Issuers returned %d certificates with error %v", len(got), err)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Fatalf("error %q does not wrap %q", err, w)
		}
	}
}

func TestIssuers(t *testing.T) {
	f := getFixture(t)
	big := bytes.Repeat([]byte{0x30}, 8192)
	tests := []struct {
		name    string
		routes  map[string]route
		urls    []string // "{srv}" is the test server
		maxSize int64
		want    []error        // nil: the intermediate is found
		hits    map[string]int // requests per path afterwards
		detail  []string       // substrings of the error
	}{
		{name: "DER certificate", routes: map[string]route{"/ca.cer": {body: f.interDER}},
			urls: []string{"{srv}/ca.cer"}, hits: map[string]int{"/ca.cer": 1}},
		{name: "PEM root and intermediate", routes: map[string]route{"/ca.pem": {body: f.chainPEM}},
			urls: []string{"{srv}/ca.pem"}},
		{name: "PEM with leading blank lines and other blocks", routes: map[string]route{"/ca.pem": {body: append([]byte("\r\n\n-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"), testpki.CertPEM(f.inter.Cert)...)}},
			urls: []string{"{srv}/ca.pem"}},
		{name: "openssl crl2pkcs7 DER with root and impostor", routes: map[string]route{"/ca.p7c": {body: f.mixedP7C}},
			urls: []string{"{srv}/ca.p7c"}},
		{name: "openssl crl2pkcs7 PEM", routes: map[string]route{"/ca.p7b": {body: f.interP7B}},
			urls: []string{"{srv}/ca.p7b"}},
		{name: "BER bundle (indefinite lengths)", routes: map[string]route{"/ca.p7c": {body: f.mixedBER}},
			urls: []string{"{srv}/ca.p7c"}},
		{name: "chunked response", routes: map[string]route{"/ca.p7c": {body: f.mixedP7C, chunked: true}},
			urls: []string{"{srv}/ca.p7c"}},

		{name: "root is not the issuer", routes: map[string]route{"/ca.cer": {body: f.root.Cert.Raw}},
			urls: []string{"{srv}/ca.cer"}, want: []error{ErrNotFound, ErrNotIssuer}},
		{name: "impostor with the issuer's name", routes: map[string]route{"/ca.cer": {body: f.impostor.Cert.Raw}},
			urls: []string{"{srv}/ca.cer"}, want: []error{ErrNotFound, ErrNotIssuer}},
		{name: "impostor bundle", routes: map[string]route{"/ca.p7c": {body: f.impostorP7C}},
			urls: []string{"{srv}/ca.p7c"}, want: []error{ErrNotFound, ErrNotIssuer}},
		{name: "garbage", routes: map[string]route{"/ca.cer": {body: []byte("<html>hello</html>")}},
			urls: []string{"{srv}/ca.cer"}, want: []error{ErrNotFound, ErrMalformed}},
		{name: "empty body", routes: map[string]route{"/ca.cer": {body: nil}},
			urls: []string{"{srv}/ca.cer"}, want: []error{ErrNotFound, ErrMalformed}},
		{name: "PEM without certificates", routes: map[string]route{"/ca.pem": {body: []byte("-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n")}},
			urls: []string{"{srv}/ca.pem"}, want: []error{ErrMalformed}},

		{name: "404 then a working URL", routes: map[string]route{"/ok.cer": {body: f.interDER}},
			urls: []string{"{srv}/gone.cer", "{srv}/ok.cer"}, hits: map[string]int{"/gone.cer": 1, "/ok.cer": 1}},
		{name: "wrong certificate then the right one", routes: map[string]route{"/root.cer": {body: f.root.Cert.Raw}, "/ok.cer": {body: f.interDER}},
			urls: []string{"{srv}/root.cer", "{srv}/ok.cer"}, hits: map[string]int{"/root.cer": 1, "/ok.cer": 1}},
		{name: "unsupported scheme skipped", routes: map[string]route{"/ok.cer": {body: f.interDER}},
			urls: []string{"ftp://ca.example.org/ca.cer", "file:///etc/ca.cer", "{srv}/ok.cer"}},
		{name: "first working URL ends the search", routes: map[string]route{"/ok.cer": {body: f.interDER}, "/other.cer": {body: f.interDER}},
			urls: []string{"{srv}/ok.cer", "{srv}/other.cer"}, hits: map[string]int{"/ok.cer": 1, "/other.cer": 0}},
		{name: "duplicate URL fetched once", routes: map[string]route{"/ca.cer": {body: f.root.Cert.Raw}},
			urls: []string{"{srv}/ca.cer", "{srv}/ca.cer"}, want: []error{ErrNotIssuer}, hits: map[string]int{"/ca.cer": 1}},
		{name: "every URL fails", routes: map[string]route{"/err": {status: http.StatusInternalServerError}},
			urls: []string{"{srv}/gone.cer", "{srv}/err", "gopher://x/"}, want: []error{ErrNotFound, ErrUnsupported},
			detail: []string{"/gone.cer: HTTP status 404", "/err: HTTP status 500", "gopher://x/: unsupported URL"}},

		{name: "oversize with Content-Length", routes: map[string]route{"/big": {body: big}},
			urls: []string{"{srv}/big"}, maxSize: 4096, want: []error{ErrNotFound, ErrTooLarge}, detail: []string{"8192 bytes announced"}},
		{name: "oversize chunked", routes: map[string]route{"/big": {body: big, chunked: true}},
			urls: []string{"{srv}/big"}, maxSize: 4096, want: []error{ErrNotFound, ErrTooLarge}, detail: []string{"more than 4096 bytes"}},
		{name: "oversize then a working URL", routes: map[string]route{"/big": {body: big, chunked: true}, "/ok.cer": {body: f.interDER}},
			urls: []string{"{srv}/big", "{srv}/ok.cer"}, maxSize: 4096},
		{name: "exactly MaxSize", routes: map[string]route{"/ca.cer": {body: f.interDER}},
			urls: []string{"{srv}/ca.cer"}, maxSize: int64(len(f.interDER))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, tt.routes)
			var urls []string
			for _, u := range tt.urls {
				urls = append(urls, strings.ReplaceAll(u, "{srv}", srv.URL))
			}
			fe := &Fetcher{MaxSize: tt.maxSize, CacheDir: t.TempDir()}
			got, err := fe.Issuers(context.Background(), f.leaf(t, nil, urls...))
			if tt.want == nil {
				wantIssuer(t, got, err)
			} else {
				wantErrs(t, got, err, tt.want...)
				t.Logf("error: %v", err)
				var ue *URLError
				if !errors.As(err, &ue) || ue.Cached {
					t.Errorf("no uncached *URLError in %v", err)
				}
			}
			for _, d := range tt.detail {
				if err == nil || !strings.Contains(err.Error(), d) {
					t.Errorf("error %v does not say %q", err, d)
				}
			}
			for p, n := range tt.hits {
				if got := srv.hitsOf(p); got != n {
					t.Errorf("%s requested %d times, want %d", p, got, n)
				}
			}
		})
	}
}

func TestNoURL(t *testing.T) {
	f := getFixture(t)
	_, err := (&Fetcher{}).Issuers(context.Background(), f.leaf(t, nil))
	if !errors.Is(err, ErrNoURL) {
		t.Fatalf("error %v, want ErrNoURL", err)
	}
	if _, err := (&Fetcher{}).Issuers(context.Background(), nil); err == nil {
		t.Fatal("a nil certificate was accepted")
	}
}

// TestImpostorLeaf: a certificate signed by the impostor's key, naming a
// URL that serves the impostor, gets the impostor — and never the real
// intermediate, which has the same name.
func TestImpostorLeaf(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, map[string]route{"/real.cer": {body: f.interDER}, "/imp.cer": {body: f.impostor.Cert.Raw}})
	fe := &Fetcher{}
	leaf := f.leaf(t, f.impostor, srv.URL+"/real.cer", srv.URL+"/imp.cer")
	got, err := fe.Issuers(context.Background(), leaf)
	if err != nil || len(got) != 1 || !got[0].Equal(f.impostor.Cert) {
		t.Fatalf("Issuers = %d certificates, %v; want the impostor, which signed it", len(got), err)
	}

	// One cached bundle holding both: each certificate gets its own issuer.
	mixed := srv.URL + "/mixed.p7c"
	srv.set("/mixed.p7c", route{body: f.mixedBER})
	for range 2 {
		wantIssuerFrom(t, fe, f.leaf(t, nil, mixed))
		got, err = fe.Issuers(context.Background(), f.leaf(t, f.impostor, mixed))
		if err != nil || len(got) != 1 || !got[0].Equal(f.impostor.Cert) {
			t.Fatalf("Issuers = %d certificates, %v; want the impostor", len(got), err)
		}
	}
	if n := srv.hitsOf("/mixed.p7c"); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestTimeout(t *testing.T) {
	f := getFixture(t)

	t.Run("hanging server, Fetcher.Timeout", func(t *testing.T) {
		srv := newServer(t, map[string]route{"/hang": {hang: true}})
		fe := &Fetcher{Timeout: 300 * time.Millisecond}
		start := time.Now()
		got, err := fe.Issuers(context.Background(), f.leaf(t, nil, srv.URL+"/hang"))
		took := time.Since(start)
		wantErrs(t, got, err, ErrNotFound, context.DeadlineExceeded)
		if took > 2*time.Second {
			t.Fatalf("Issuers took %v with a 300ms timeout", took)
		}
		// A server that did not answer in time is not asked again at once.
		_, err = fe.Issuers(context.Background(), f.leaf(t, nil, srv.URL+"/hang"))
		var ue *URLError
		if !errors.As(err, &ue) || !ue.Cached || srv.hitsOf("/hang") != 1 {
			t.Fatalf("second call: %v, %d requests; want the cached failure", err, srv.hitsOf("/hang"))
		}
	})

	t.Run("hanging server, caller's context", func(t *testing.T) {
		srv := newServer(t, map[string]route{"/hang": {hang: true}})
		fe := &Fetcher{Timeout: time.Minute}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		got, err := fe.Issuers(ctx, f.leaf(t, nil, srv.URL+"/hang"))
		wantErrs(t, got, err, ErrNotFound, context.DeadlineExceeded)
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("Issuers took %v with a 200ms context", took)
		}
		// The caller gave up, not the server: nothing is remembered.
		ctx2, cancel2 := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel2)
		_, err = fe.Issuers(ctx2, f.leaf(t, nil, srv.URL+"/hang"))
		if !errors.Is(err, context.Canceled) || srv.hitsOf("/hang") != 2 {
			t.Fatalf("second call: %v, %d requests; want a new request, cancelled", err, srv.hitsOf("/hang"))
		}
		// Nobody waits for either request any more: both were cancelled,
		// long before the Fetcher's own minute.
		waitFor(t, func() bool { return srv.abandoned.Load() == 2 })
	})

	t.Run("context already done", func(t *testing.T) {
		srv := newServer(t, map[string]route{"/ca.cer": {body: f.interDER}})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := (&Fetcher{}).Issuers(ctx, f.leaf(t, nil, srv.URL+"/ca.cer"))
		if !errors.Is(err, context.Canceled) || srv.total.Load() != 0 {
			t.Fatalf("error %v after %d requests, want context.Canceled and none", err, srv.total.Load())
		}
	})

	t.Run("hanging server leaves time for the next URL", func(t *testing.T) {
		srv := newServer(t, map[string]route{"/hang": {hang: true}, "/ok.cer": {body: f.interDER}})
		fe := &Fetcher{Timeout: 2 * time.Second}
		start := time.Now()
		got, err := fe.Issuers(context.Background(), f.leaf(t, nil, srv.URL+"/hang", srv.URL+"/ok.cer"))
		wantIssuer(t, got, err)
		if took := time.Since(start); took > 1800*time.Millisecond {
			t.Fatalf("took %v: the hanging URL used the whole budget", took)
		}
	})
}

func TestMemoryCache(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, map[string]route{"/ca.p7c": {body: f.interP7B}})
	var clk clock
	fe := &Fetcher{Now: clk.now}
	u := srv.URL + "/ca.p7c"
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	if n := srv.total.Load(); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}

	// Another certificate of the same CA naming the same URL: from the
	// cache, re-checked against the new certificate.
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	if n := srv.total.Load(); n != 1 {
		t.Fatalf("cache hit made a request (%d)", n)
	}

	// A certificate the cached certificates did not sign: the cache has
	// nothing for it, and the URL is not asked again within NegativeTTL.
	imp := f.leaf(t, f.impostor, u)
	got, err := fe.Issuers(context.Background(), imp)
	wantErrs(t, got, err, ErrNotIssuer)
	var ue *URLError
	if !errors.As(err, &ue) || !ue.Cached || srv.total.Load() != 1 {
		t.Fatalf("impostor's certificate: %v after %d requests, want cached ErrNotIssuer", err, srv.total.Load())
	}
	// Past NegativeTTL the URL is asked again (the CA may have added an
	// intermediate); it still serves no issuer for it.
	clk.advance(DefaultNegativeTTL + time.Second)
	_, err = fe.Issuers(context.Background(), imp)
	if !errors.Is(err, ErrNotIssuer) || srv.total.Load() != 2 {
		t.Fatalf("after NegativeTTL: %v after %d requests, want a new request", err, srv.total.Load())
	}
	// The refetched certificates still serve the real chain.
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	if srv.total.Load() != 2 {
		t.Fatal("cache hit made a request")
	}

	// Past the TTL the URL is fetched again.
	clk.advance(DefaultTTL)
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	if n := srv.total.Load(); n != 3 {
		t.Fatalf("%d requests after the TTL, want 3", n)
	}

	// With the server gone, the cache still answers.
	srv.Close()
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
}

func TestNegativeCache(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, nil)
	var clk clock
	fe := &Fetcher{Now: clk.now, NegativeTTL: time.Minute}
	leaf := f.leaf(t, nil, srv.URL+"/ca.cer")
	for i, want := range []struct {
		requests int64
		cached   bool
	}{{1, false}, {1, true}, {1, true}} {
		_, err := fe.Issuers(context.Background(), leaf)
		var ue *URLError
		if !errors.As(err, &ue) || ue.Cached != want.cached || srv.total.Load() != want.requests {
			t.Fatalf("call %d: %v after %d requests; want cached %v after %d", i, err, srv.total.Load(), want.cached, want.requests)
		}
		if want.cached && !strings.Contains(err.Error(), "(cached)") {
			t.Errorf("error %q does not say it is cached", err)
		}
	}
	// The server is fixed; after NegativeTTL it is asked again.
	srv.set("/ca.cer", route{body: f.interDER})
	clk.advance(time.Minute)
	wantIssuerFrom(t, fe, leaf)
	if srv.total.Load() != 2 {
		t.Fatalf("%d requests, want 2", srv.total.Load())
	}
}

// TestFailedRefetchKeepsCache: when a refetch for a certificate the cached
// answer did not cover fails, what the URL served before stays usable.
func TestFailedRefetchKeepsCache(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, map[string]route{"/ca.cer": {body: f.interDER}})
	var clk clock
	fe := &Fetcher{Now: clk.now}
	u := srv.URL + "/ca.cer"
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	clk.advance(DefaultNegativeTTL)
	srv.set("/ca.cer", route{status: http.StatusServiceUnavailable})
	_, err := fe.Issuers(context.Background(), f.leaf(t, f.impostor, u))
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("refetch: %v, want HTTP 503", err)
	}
	wantIssuerFrom(t, fe, f.leaf(t, nil, u))
	_, err = fe.Issuers(context.Background(), f.leaf(t, f.impostor, u))
	if !errors.Is(err, ErrNotIssuer) || srv.total.Load() != 2 {
		t.Fatalf("%v after %d requests; want cached ErrNotIssuer after 2", err, srv.total.Load())
	}
}

func TestDiskCache(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, map[string]route{"/ca.p7c": {body: f.interP7B}})
	dir := filepath.Join(t.TempDir(), "aia")
	u := srv.URL + "/ca.p7c"
	wantIssuerFrom(t, &Fetcher{CacheDir: dir}, f.leaf(t, nil, u))

	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("cache directory: %v, mode %v; want 0700", err, st.Mode())
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("cache directory holds %d files, want 1", len(ents))
	}
	fst, _ := os.Stat(filepath.Join(dir, ents[0].Name()))
	if fst.Mode().Perm() != 0o600 {
		t.Errorf("cache file mode %v, want 0600", fst.Mode())
	}

	// A new Fetcher (a restart) answers from disk, without the server.
	srv.Close()
	wantIssuerFrom(t, &Fetcher{CacheDir: dir}, f.leaf(t, nil, u))
	if srv.total.Load() != 1 {
		t.Fatalf("%d requests, want 1", srv.total.Load())
	}
	// Re-checked on load: the impostor's certificate gets nothing.
	_, err = (&Fetcher{CacheDir: dir}).Issuers(context.Background(), f.leaf(t, f.impostor, u))
	if !errors.Is(err, ErrNotIssuer) {
		t.Fatalf("impostor's certificate from the disk cache: %v", err)
	}
	// Past the TTL the disk copy is not used.
	var clk clock
	clk.advance(DefaultTTL + time.Minute)
	_, err = (&Fetcher{CacheDir: dir, Now: clk.now, Timeout: time.Second}).Issuers(context.Background(), f.leaf(t, nil, u))
	if err == nil || errors.Is(err, ErrNotIssuer) {
		t.Fatalf("stale disk cache used: %v", err)
	}
	// Nor when the clock went back before the fetch.
	clk.advance(-DefaultTTL - 2*time.Hour)
	_, err = (&Fetcher{CacheDir: dir, Now: clk.now, Timeout: time.Second}).Issuers(context.Background(), f.leaf(t, nil, u))
	if err == nil {
		t.Fatal("disk cache from the future used")
	}
}

func TestCorruptDiskCache(t *testing.T) {
	f := getFixture(t)
	good := encodeDisk("URL", []*x509.Certificate{f.inter.Cert}, time.Now())
	tests := []struct {
		name string
		data func(u string) []byte
	}{
		{"empty", func(string) []byte { return nil }},
		{"garbage", func(string) []byte { return []byte("\x00\x01garbage") }},
		{"truncated", func(u string) []byte {
			b := encodeDisk(u, []*x509.Certificate{f.inter.Cert}, time.Now())
			return b[:len(b)/2]
		}},
		{"another URL's file", func(string) []byte { return good }},
		{"bad time", func(u string) []byte {
			return bytes.Replace(encodeDisk(u, []*x509.Certificate{f.inter.Cert}, time.Now()), []byte("fetched 2"), []byte("fetched x"), 1)
		}},
		{"no certificate", func(u string) []byte {
			b := encodeDisk(u, nil, time.Now())
			return append(b, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"...)
		}},
		{"DER instead of the cache format", func(string) []byte { return f.interDER }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t, map[string]route{"/ca.cer": {body: f.interDER}})
			u := srv.URL + "/ca.cer"
			dir := t.TempDir()
			fe := &Fetcher{CacheDir: dir}
			path := fe.diskPath(u)
			if err := os.WriteFile(path, tt.data(u), 0o600); err != nil {
				t.Fatal(err)
			}
			wantIssuerFrom(t, fe, f.leaf(t, nil, u))
			if srv.total.Load() != 1 {
				t.Fatalf("%d requests, want 1 (the corrupt file was used?)", srv.total.Load())
			}
			// Replaced by the fetched answer, which a restart uses.
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := decodeDisk(data, u); err != nil {
				t.Fatalf("the corrupt file was not replaced: %v", err)
			}
			wantIssuerFrom(t, &Fetcher{CacheDir: dir}, f.leaf(t, nil, u))
			if srv.total.Load() != 1 {
				t.Fatalf("%d requests after the restart, want 1", srv.total.Load())
			}
		})
	}
}

// TestCorruptDiskCacheRemoved: a corrupt file is removed even when the
// fetch fails, so it is not read again.
func TestCorruptDiskCacheRemoved(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, nil)
	u := srv.URL + "/ca.cer"
	fe := &Fetcher{CacheDir: t.TempDir()}
	if err := os.WriteFile(fe.diskPath(u), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := fe.Issuers(context.Background(), f.leaf(t, nil, u)); err == nil {
		t.Fatal("no error")
	}
	if _, err := os.Stat(fe.diskPath(u)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("corrupt file still there: %v", err)
	}
}

func TestConcurrent(t *testing.T) {
	f := getFixture(t)
	srv := newServer(t, map[string]route{"/a.cer": {body: f.interDER}, "/b.p7c": {body: f.mixedP7C}})
	fe := &Fetcher{CacheDir: t.TempDir()}
	leaves := []*x509.Certificate{
		f.leaf(t, nil, srv.URL+"/a.cer"),
		f.leaf(t, nil, srv.URL+"/missing", srv.URL+"/b.p7c"),
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Go(func() {
			got, err := fe.Issuers(context.Background(), leaves[i%2])
			if err == nil && (len(got) != 1 || !got[0].Equal(f.inter.Cert)) {
				err = errors.New("wrong certificates")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestSharedFetch: callers that miss the cache for the same URL at the same
// time share one request; one that gives up stops waiting at once, and the
// request goes on for the others.
func TestSharedFetch(t *testing.T) {
	f := getFixture(t)
	gate := make(chan struct{})
	srv := newServer(t, map[string]route{"/ca.cer": {body: f.interDER, gate: gate}})
	fe := &Fetcher{}
	u := srv.URL + "/ca.cer"

	impatient, giveUp := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := fe.Issuers(impatient, f.leaf(t, nil, u))
		gaveUp <- err
	}()
	waitFor(t, func() bool { return srv.total.Load() == 1 })

	const callers = 10
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			got, err := fe.Issuers(context.Background(), f.leaf(t, nil, u))
			if err == nil && (len(got) != 1 || !got[0].Equal(f.inter.Cert)) {
				err = errors.New("wrong certificates")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	// Every caller waits for the one request before the first gives up.
	waitFor(t, func() bool {
		fe.mu.Lock()
		defer fe.mu.Unlock()
		fl := fe.flights[u]
		return fl != nil && fl.waiters == callers+1
	})
	giveUp()
	select {
	case err := <-gaveUp:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the caller that gave up got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller that gave up is still waiting for the shared fetch")
	}
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := srv.total.Load(); n != 1 {
		t.Errorf("%d requests for %d simultaneous callers, want 1", n, callers+1)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("timed out waiting")
}

func TestParseResponse(t *testing.T) {
	f := getFixture(t)
	sd, _, err := cms.ParseSignedData(f.mixedBER)
	if err != nil || f.mixedBER[1] != 0x80 {
		t.Fatalf("the BER fixture is not indefinite-length BER that smime/cms reads: %v", err)
	}
	if len(sd.Certificates) != 3 {
		t.Fatalf("BER fixture: %d certificates", len(sd.Certificates))
	}
	tests := []struct {
		name string
		body []byte
		n    int   // certificates
		err  error // wrapped
	}{
		{"DER", f.interDER, 1, nil},
		{"PEM", f.chainPEM, 2, nil},
		{"p7c", f.mixedP7C, 3, nil},
		{"p7b", f.interP7B, 1, nil},
		{"BER", f.mixedBER, 3, nil},
		{"DER with trailing data", append(append([]byte{}, f.interDER...), 0), 0, ErrMalformed},
		{"truncated DER", f.interDER[:100], 0, ErrMalformed},
		{"PEM with a bad certificate and a good one", append([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), testpki.CertPEM(f.inter.Cert)...), 1, nil},
		{"PEM bad only", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), 0, ErrMalformed},
		{"too many PEM certificates", bytes.Repeat(testpki.CertPEM(f.inter.Cert), maxCerts+1), 0, ErrTooLarge},
		{"empty", nil, 0, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs, err := parseResponse(tt.body)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil || len(certs) != tt.n {
				t.Fatalf("%d certificates, %v; want %d", len(certs), err, tt.n)
			}
		})
	}
}
