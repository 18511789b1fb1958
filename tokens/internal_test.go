package tokens

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/smimed/smimed/prompt"
	"github.com/smimed/smimed/tokens/internal/wire"
)

// TestDigestInfo: prefix || digest signed raw equals crypto/rsa's
// PKCS #1 v1.5 signature (deterministic).
func TestDigestInfo(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []crypto.Hash{crypto.SHA1, crypto.SHA224, crypto.SHA256, crypto.SHA384, crypto.SHA512} {
		d := h.New()
		d.Write([]byte("message"))
		digest := d.Sum(nil)
		prefix, err := digestInfoPrefix(h)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := rsa.SignPKCS1v15(nil, key, 0, append(prefix, digest...))
		if err != nil {
			t.Fatal(err)
		}
		want, err := rsa.SignPKCS1v15(nil, key, h, digest)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, want) {
			t.Errorf("%v: DigestInfo prefix %x is wrong", h, prefix)
		}
	}
	if p, err := digestInfoPrefix(0); p != nil || err != nil {
		t.Errorf("hash 0: %x %v", p, err)
	}
	if _, err := digestInfoPrefix(crypto.MD5); err == nil {
		t.Error("MD5 accepted")
	}
}

func TestECDSADER(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	digest := sha256.Sum256([]byte("m"))
	r, s, err := ecdsa.Sign(rand.Reader, key, digest[:])
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	der, err := ecdsaDER(raw)
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(&key.PublicKey, digest[:], der) {
		t.Fatal("converted signature does not verify")
	}
	if _, err := ecdsaDER(raw[:63]); err == nil {
		t.Fatal("odd length accepted")
	}
}

func TestPromptRequest(t *testing.T) {
	m := &Manager{lastFailed: map[string]bool{}}
	h := &handle{m: m, id: Identity{Label: "Alice <a@example.com>", Token: Token{ID: "t1", Label: "Card"}},
		req: prompt.Request{Operation: prompt.OpSign, Subject: "s"}}
	r := h.promptRequest(prompt.PIN, wire.CKF_LOGIN_REQUIRED)
	if r.Kind != prompt.PIN || r.KeyLabel != "Alice <a@example.com>" || r.TokenLabel != "Card" ||
		r.TriesLeft != prompt.TriesUnknown || r.Error != "" || r.Subject != "s" {
		t.Fatalf("%+v", r)
	}
	m.setLastFailed("t1", true)
	r = h.promptRequest(prompt.PIN, wire.CKF_USER_PIN_COUNT_LOW|wire.CKF_USER_PIN_FINAL_TRY)
	if r.TriesLeft != 1 || r.Error != "Wrong PIN." || !strings.Contains(r.Description(), "FINAL try") {
		t.Fatalf("final try: %+v", r)
	}
	r = h.promptRequest(prompt.PIN, wire.CKF_USER_PIN_COUNT_LOW)
	if r.TriesLeft != prompt.TriesUnknown || !strings.Contains(r.Error, "Wrong PIN.") || !strings.Contains(r.Error, "count low") {
		t.Fatalf("count low: %+v", r)
	}
	h.req.Error = "caller's"
	if r = h.promptRequest(prompt.PIN, wire.CKF_USER_PIN_COUNT_LOW); r.Error != "caller's" {
		t.Fatalf("caller's error replaced: %+v", r)
	}
	if got := pinState(wire.CKF_USER_PIN_LOCKED | wire.CKF_USER_PIN_COUNT_LOW); got != PINLocked {
		t.Errorf("pinState %s", got)
	}
}
