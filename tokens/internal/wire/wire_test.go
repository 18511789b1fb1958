package wire

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	pin := []byte("1234")
	req := Request{ID: 7, Op: OpSign, Token: &TokenRef{Label: "T", Serial: "s"}, KeyID: []byte{1}, Data: []byte{9, 9}, Login: LoginPIN}
	if err := WriteFrame(&buf, req, pin); err != nil {
		t.Fatal(err)
	}
	if err := WriteFrame(&buf, Response{ID: 7, Result: []byte("sig")}, nil); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(buf.Bytes()[:bytes.Index(buf.Bytes(), pin)], pin) {
		t.Fatal("the PIN appears in the control part")
	}
	f, err := ReadFrame(&buf)
	if err != nil {
		t.Fatal(err)
	}
	var got Request
	if err := json.Unmarshal(f.Control, &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != 7 || got.Op != OpSign || got.Token.Label != "T" || !bytes.Equal(f.Secret, pin) {
		t.Fatalf("got %+v secret %q", got, f.Secret)
	}
	secret := f.Secret
	f.Wipe()
	if !bytes.Equal(secret, make([]byte, len(pin))) || f.Secret != nil {
		t.Fatalf("Wipe left %q", secret)
	}
	f, err = ReadFrame(&buf)
	if err != nil || f.Secret != nil {
		t.Fatalf("second frame: %v %+v", err, f)
	}
	if _, err := ReadFrame(&buf); !errors.Is(err, io.EOF) {
		t.Fatalf("end: %v", err)
	}
}

func TestFrameErrors(t *testing.T) {
	var hdr [8]byte
	binary.BigEndian.PutUint32(hdr[0:4], MaxControl+1)
	if _, err := ReadFrame(bytes.NewReader(hdr[:])); !errors.Is(err, ErrFrame) {
		t.Errorf("oversized control: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[0:4], 2)
	binary.BigEndian.PutUint32(hdr[4:8], MaxSecret+1)
	if _, err := ReadFrame(bytes.NewReader(hdr[:])); !errors.Is(err, ErrFrame) {
		t.Errorf("oversized secret: %v", err)
	}
	binary.BigEndian.PutUint32(hdr[4:8], 4)
	if _, err := ReadFrame(bytes.NewReader(append(hdr[:], '{', '}', '1'))); !errors.Is(err, ErrFrame) {
		t.Errorf("truncated secret: %v", err)
	}
	if _, err := ReadFrame(bytes.NewReader(hdr[:5])); !errors.Is(err, ErrFrame) {
		t.Errorf("truncated header: %v", err)
	}
	if err := WriteFrame(io.Discard, Request{}, make([]byte, MaxSecret+1)); !errors.Is(err, ErrFrame) {
		t.Errorf("writing an oversized secret: %v", err)
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Kind: KindPinIncorrect, Func: "C_Login", Code: 0xA0, Message: "CKR_PIN_INCORRECT"}
	if got := e.Error(); got != "C_Login: CKR_PIN_INCORRECT (0xA0)" {
		t.Errorf("%q", got)
	}
	if got := MechanismName(CKM_RSA_PKCS_PSS); got != "CKM_RSA_PKCS_PSS (RSA-PSS signatures)" {
		t.Errorf("%q", got)
	}
	if got := MechanismName(0x1234); got != "mechanism 0x1234" {
		t.Errorf("%q", got)
	}
}
