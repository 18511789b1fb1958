//go:build cgo && unix

package worker

import (
	"testing"

	"github.com/miekg/pkcs11"

	"github.com/smimed/smimed/tokens/internal/wire"
)

// TestConstants checks the daemon side's copy of PKCS#11 numbers.
func TestConstants(t *testing.T) {
	for name, c := range map[string][2]uint{
		"CKM_RSA_PKCS":                      {wire.CKM_RSA_PKCS, pkcs11.CKM_RSA_PKCS},
		"CKM_RSA_PKCS_OAEP":                 {wire.CKM_RSA_PKCS_OAEP, pkcs11.CKM_RSA_PKCS_OAEP},
		"CKM_RSA_PKCS_PSS":                  {wire.CKM_RSA_PKCS_PSS, pkcs11.CKM_RSA_PKCS_PSS},
		"CKM_ECDSA":                         {wire.CKM_ECDSA, pkcs11.CKM_ECDSA},
		"CKM_ECDH1_DERIVE":                  {wire.CKM_ECDH1_DERIVE, pkcs11.CKM_ECDH1_DERIVE},
		"CKM_SHA_1":                         {wire.CKM_SHA_1, pkcs11.CKM_SHA_1},
		"CKM_SHA224":                        {wire.CKM_SHA224, pkcs11.CKM_SHA224},
		"CKM_SHA256":                        {wire.CKM_SHA256, pkcs11.CKM_SHA256},
		"CKM_SHA384":                        {wire.CKM_SHA384, pkcs11.CKM_SHA384},
		"CKM_SHA512":                        {wire.CKM_SHA512, pkcs11.CKM_SHA512},
		"CKG_MGF1_SHA1":                     {wire.CKG_MGF1_SHA1, pkcs11.CKG_MGF1_SHA1},
		"CKG_MGF1_SHA224":                   {wire.CKG_MGF1_SHA224, pkcs11.CKG_MGF1_SHA224},
		"CKG_MGF1_SHA256":                   {wire.CKG_MGF1_SHA256, pkcs11.CKG_MGF1_SHA256},
		"CKG_MGF1_SHA384":                   {wire.CKG_MGF1_SHA384, pkcs11.CKG_MGF1_SHA384},
		"CKG_MGF1_SHA512":                   {wire.CKG_MGF1_SHA512, pkcs11.CKG_MGF1_SHA512},
		"CKK_RSA":                           {wire.CKK_RSA, pkcs11.CKK_RSA},
		"CKK_EC":                            {wire.CKK_EC, pkcs11.CKK_EC},
		"CKF_LOGIN_REQUIRED":                {wire.CKF_LOGIN_REQUIRED, pkcs11.CKF_LOGIN_REQUIRED},
		"CKF_USER_PIN_INITIALIZED":          {wire.CKF_USER_PIN_INITIALIZED, pkcs11.CKF_USER_PIN_INITIALIZED},
		"CKF_PROTECTED_AUTHENTICATION_PATH": {wire.CKF_PROTECTED_AUTHENTICATION_PATH, pkcs11.CKF_PROTECTED_AUTHENTICATION_PATH},
		"CKF_TOKEN_INITIALIZED":             {wire.CKF_TOKEN_INITIALIZED, pkcs11.CKF_TOKEN_INITIALIZED},
		"CKF_USER_PIN_COUNT_LOW":            {wire.CKF_USER_PIN_COUNT_LOW, pkcs11.CKF_USER_PIN_COUNT_LOW},
		"CKF_USER_PIN_FINAL_TRY":            {wire.CKF_USER_PIN_FINAL_TRY, pkcs11.CKF_USER_PIN_FINAL_TRY},
		"CKF_USER_PIN_LOCKED":               {wire.CKF_USER_PIN_LOCKED, pkcs11.CKF_USER_PIN_LOCKED},
		"CKF_USER_PIN_TO_BE_CHANGED":        {wire.CKF_USER_PIN_TO_BE_CHANGED, pkcs11.CKF_USER_PIN_TO_BE_CHANGED},
	} {
		if c[0] != c[1] {
			t.Errorf("%s: wire has %#x, pkcs11 %#x", name, c[0], c[1])
		}
	}
}

// TestKinds: how return codes become error kinds.
func TestKinds(t *testing.T) {
	for _, c := range []struct {
		fn   string
		code uint
		want string
	}{
		{"C_Login", pkcs11.CKR_PIN_INCORRECT, wire.KindPinIncorrect},
		{"C_Login", pkcs11.CKR_PIN_LEN_RANGE, wire.KindPinIncorrect},
		{"C_Login", pkcs11.CKR_PIN_LOCKED, wire.KindPinLocked},
		{"C_Login", pkcs11.CKR_FUNCTION_CANCELED, wire.KindCancelled},
		{"C_Sign", pkcs11.CKR_DEVICE_REMOVED, wire.KindTokenRemoved},
		{"C_OpenSession", pkcs11.CKR_TOKEN_NOT_PRESENT, wire.KindTokenRemoved},
		{"C_Sign", pkcs11.CKR_SESSION_HANDLE_INVALID, wire.KindTokenRemoved},
		{"C_GetTokenInfo", pkcs11.CKR_SLOT_ID_INVALID, wire.KindTokenRemoved},
		{"C_SignInit", pkcs11.CKR_MECHANISM_INVALID, wire.KindUnsupported},
		{"C_DecryptInit", pkcs11.CKR_MECHANISM_PARAM_INVALID, wire.KindUnsupported},
		{"C_DecryptInit", pkcs11.CKR_ARGUMENTS_BAD, wire.KindUnsupported},
		{"C_Decrypt", pkcs11.CKR_ARGUMENTS_BAD, wire.KindOther},
		{"C_Decrypt", pkcs11.CKR_ENCRYPTED_DATA_INVALID, wire.KindBadPadding},
		{"C_Decrypt", pkcs11.CKR_GENERAL_ERROR, wire.KindBadPadding},
		{"C_Sign", pkcs11.CKR_GENERAL_ERROR, wire.KindOther},
		{"C_Sign", pkcs11.CKR_DEVICE_ERROR, wire.KindOther},
	} {
		e := classify(c.fn, pkcs11.Error(c.code))
		if e.Kind != c.want || e.Code != c.code || e.Func != c.fn {
			t.Errorf("%s %#x: %+v, want kind %s", c.fn, c.code, e, c.want)
		}
	}
	if e := classify("C_Login", pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)); e.Message != "CKR_PIN_INCORRECT" {
		t.Errorf("message %q", e.Message)
	}
}

func TestUlong(t *testing.T) {
	if got := ulong([]byte{3, 0, 0, 0, 0, 0, 0, 0}); got != 3 {
		t.Errorf("%d", got)
	}
	if got := ulong([]byte{0x50, 0x10, 0, 0}); got != 0x1050 {
		t.Errorf("%#x", got)
	}
	if got := ulong(nil); got != ^uint(0) {
		t.Errorf("%d", got)
	}
}
