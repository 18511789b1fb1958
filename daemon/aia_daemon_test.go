package daemon

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/smimed/smimed/internal/testldap"
	"github.com/smimed/smimed/internal/testpki"
	"github.com/smimed/smimed/ipc"
	"github.com/smimed/smimed/smime"
	"github.com/smimed/smimed/smime/cms"
)

// aiaFixture is a PKI whose intermediate CA the daemon is never given: it
// is served only, as DER, at the caIssuers URL that the end entities'
// certificates name, by a loopback HTTP server that counts the requests.
// The user's own identity is issued by the root directly, so that its
// chain does not bring the intermediate either.
type aiaFixture struct {
	pki   *testpki.PKI
	url   string            // the caIssuers URL
	bob   *testpki.Identity // recipient, published in the directory
	alice *testpki.Identity // a sender whose message carries no chain
	me    *testpki.Identity // the user's identity (for the sent copy)
	hits  atomic.Int64      // requests the AIA server received
}

func newAIAFixture(t *testing.T) *aiaFixture {
	t.Helper()
	f := &aiaFixture{pki: testpki.New(t)}
	der := f.pki.Intermediate.Cert.Raw
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.hits.Add(1)
		if r.URL.Path != "/ca/intermediate.cer" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-cert")
		w.Write(der)
	}))
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/ca/intermediate.cer"
	leaf := func(email string) *testpki.Identity {
		id := f.pki.Issue(t, testpki.Options{Email: email, IssuingCertificateURL: []string{f.url}})
		c := id.Cert
		if len(c.IssuingCertificateURL) != 1 || c.IssuingCertificateURL[0] != f.url || len(c.EmailAddresses) != 1 ||
			c.KeyUsage&x509.KeyUsageKeyEncipherment == 0 || len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageEmailProtection ||
			!bytes.Equal(c.RawIssuer, f.pki.Intermediate.Cert.RawSubject) {
			t.Fatalf("%s: the test certificate is not as intended: %+v", email, c)
		}
		return id
	}
	f.bob = leaf("bob@example.org")
	f.alice = leaf("alice@example.org")
	f.me = f.pki.Issue(t, testpki.Options{Email: "me@example.net", Issuer: f.pki.Root})
	if len(f.me.Chain) != 0 {
		t.Fatal("the user's identity must not carry the intermediate")
	}
	return f
}

// harness starts a daemon with the user's identity and the root as a
// trust anchor, with extra user configuration.
func (f *aiaFixture) harness(t *testing.T, user string) *harness {
	t.Helper()
	h := newHarness(t, harnessOptions{pki: f.pki, user: user})
	h.importIdentity(f.me)
	h.trustRoot()
	return h
}

// storedIssuers is what the daemon's intermediate store holds.
func storedIssuers(t *testing.T, h *harness) []*x509.Certificate {
	t.Helper()
	certs, err := h.svc.issuers.List(h.ctx())
	if err != nil {
		t.Fatalf("intermediate store: %v", err)
	}
	return certs
}

func holds(certs []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range certs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// trustConfig is the user configuration's [trust] section setting
// fetch_issuers, or nothing for the default.
func trustConfig(fetch string) string {
	if fetch == "" {
		return ""
	}
	return "[trust]\nfetch_issuers = " + quote(fetch) + "\n"
}

// TestAIAComposeTime: a recipient's certificate found in a real slapd,
// whose intermediate CA only its AIA caIssuers URL gives, is usable while
// composing (CertsFind, Encrypt) when trust.fetch_issuers allows fetching
// ("compose", the default, and "always"): the URL is asked once, the
// intermediate kept in the intermediate store, and later lookups ask it
// no more. With "never" the URL is not asked and the certificate is
// "untrusted".
func TestAIAComposeTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, fetch string
		found       bool
		reason      string
		hits        int64
	}{
		{"default", "", true, "", 1},
		{"compose", "compose", true, "", 1},
		{"always", "always", true, "", 1},
		{"never", "never", false, reasonUntrusted, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newAIAFixture(t)
			srv := testldap.Start(t, false)
			srv.Person(t, "bob", "bob@example.org", map[string][]string{"userCertificate;binary": {string(f.bob.Cert.Raw)}})
			h := f.harness(t, trustConfig(c.fetch)+"[directory]\nldap = ["+quote(srv.URL)+"]\n")
			ctx := h.ctx()
			if got := h.cfg.Trust.FetchIssuers; got != or(c.fetch, "compose") {
				t.Fatalf("trust.fetch_issuers = %q", got)
			}

			find := func(step string) {
				t.Helper()
				look, err := h.svc.CertsFind(ctx, "bob@example.org")
				if err != nil {
					t.Fatalf("%s: CertsFind: %v", step, err)
				}
				if c.found {
					if len(look.Certificates) != 1 || look.Certificates[0].SHA256 != digestOf(f.bob.Cert.Raw) || look.Reason != "" {
						t.Fatalf("%s: CertsFind = %+v, want Bob's directory certificate", step, look)
					}
				} else if len(look.Certificates) != 0 || look.Reason != c.reason {
					t.Fatalf("%s: CertsFind = %+v, want none, reason %q", step, look, c.reason)
				}
				if n := f.hits.Load(); n != c.hits {
					t.Fatalf("%s: the AIA server got %d requests, want %d", step, n, c.hits)
				}
			}
			find("first lookup")
			if got := holds(storedIssuers(t, h), f.pki.Intermediate.Cert); got != c.found {
				t.Fatalf("intermediate in the store = %v, want %v", got, c.found)
			}
			find("second lookup") // no new request: the intermediate is in the store

			msg := newMail("me@example.net", "bob@example.org", "s", "for Bob, whose CA came from AIA")
			var enc bytes.Buffer
			err := h.svc.Encrypt(ctx, ipc.EncryptRequest{To: []string{"bob@example.org"}, From: "me@example.net"}, bytes.NewReader(msg), &enc)
			if !c.found {
				ie := wantName(t, err, ipc.NoRecipientCertificate)
				if !strings.Contains(ie.Message, "bob@example.org ("+c.reason+")") {
					t.Errorf("Encrypt refusal %q does not give Bob's reason %q", ie.Message, c.reason)
				}
			} else {
				if err != nil {
					t.Fatalf("Encrypt to Bob: %v", err)
				}
				if got, n := recipientsOf(t, enc.Bytes(), f.bob.Cert, f.me.Cert); !got[0] || !got[1] || n != 2 {
					t.Fatalf("recipients (Bob, me) = %v of %d", got, n)
				}
				var plain bytes.Buffer
				if _, err := smime.Open(context.Background(), &plain, bytes.NewReader(enc.Bytes()), smime.OpenOptions{
					Roots: f.pki.Roots(),
					FindKey: func(_ context.Context, ris []cms.RecipientInfo) (*smime.DecryptionKey, error) {
						return &smime.DecryptionKey{Certificate: f.bob.Cert, PrivateKey: f.bob.Key}, nil
					},
				}); err != nil {
					t.Fatalf("Bob cannot decrypt: %v", err)
				}
				if !strings.Contains(plain.String(), "for Bob, whose CA came from AIA") {
					t.Fatalf("Bob decrypted %q", plain.String())
				}
			}
			if n := f.hits.Load(); n != c.hits {
				t.Fatalf("after Encrypt the AIA server got %d requests, want %d", n, c.hits)
			}

			// After a restart (new fetcher, empty memory cache, new
			// directory cache) the stored intermediate still serves.
			if err := h.svc.Close(); err != nil {
				t.Fatal(err)
			}
			h.start()
			find("lookup after a restart")
		})
	}
}

// TestAIAReadTime: a message signed by a certificate whose intermediate
// CA is neither in the message nor known to the daemon. Reading it must
// not contact the URL the certificate names (it would tell the sender when
// the mail was read) unless trust.fetch_issuers is "always": by default
// (and with "never") the signature is "untrusted" and the AIA server gets
// no request; with "always" the intermediate is fetched and the signature
// is "good".
func TestAIAReadTime(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name, fetch string
		outcome     string
		hits        int64
	}{
		{"default", "", smime.OutcomeUntrusted, 0},
		{"compose", "compose", smime.OutcomeUntrusted, 0},
		{"never", "never", smime.OutcomeUntrusted, 0},
		{"always", "always", smime.OutcomeGood, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newAIAFixture(t)
			h := f.harness(t, trustConfig(c.fetch))
			ctx := h.ctx()

			var signed bytes.Buffer
			if err := smime.Sign(ctx, &signed, bytes.NewReader(newMail("alice@example.org", "me@example.net", "hi", "signed, no chain")),
				smime.SignOptions{Signer: f.alice.Key, Certificate: f.alice.Cert}); err != nil {
				t.Fatal(err)
			}
			// The message carries Alice's certificate and nothing else.
			st, err := smime.Verify(ctx, io.Discard, bytes.NewReader(signed.Bytes()), smime.OpenOptions{Roots: x509.NewCertPool()})
			if err != nil || len(st.Certificates) != 1 || !st.Certificates[0].Equal(f.alice.Cert) {
				t.Fatalf("the test message's certificates: %v (%v)", st, err)
			}

			for _, step := range []string{"first read", "second read"} {
				var out bytes.Buffer
				status, err := h.svc.Verify(ctx, ipc.OpenRequest{}, bytes.NewReader(signed.Bytes()), &out)
				if err != nil {
					t.Fatalf("%s: Verify: %v", step, err)
				}
				if status.Signature != c.outcome {
					t.Fatalf("%s: signature %q (%+v), want %q", step, status.Signature, status.Layers, c.outcome)
				}
				if !strings.Contains(out.String(), "signed, no chain") {
					t.Fatalf("%s: content %q", step, out.String())
				}
				if n := f.hits.Load(); n != c.hits {
					t.Fatalf("%s: the AIA server got %d requests, want %d", step, n, c.hits)
				}
			}
			trusted := c.outcome == smime.OutcomeGood
			if got := holds(storedIssuers(t, h), f.pki.Intermediate.Cert); got != trusted {
				t.Errorf("intermediate in the store = %v, want %v", got, trusted)
			}
			// Only a trusted signer is learnt into the address book.
			look, err := h.svc.CertsFind(ctx, "alice@example.org")
			if err != nil {
				t.Fatal(err)
			}
			if got := len(look.Certificates) == 1 && look.Certificates[0].SHA256 == digestOf(f.alice.Cert.Raw); got != trusted {
				t.Errorf("Alice learnt from the message = %v (%+v), want %v", got, look, trusted)
			}
			if n := f.hits.Load(); n != c.hits {
				t.Fatalf("at the end the AIA server got %d requests, want %d", n, c.hits)
			}
		})
	}
}
