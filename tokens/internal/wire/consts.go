package wire

// PKCS#11 numbers the daemon side needs (it does not link the PKCS#11
// library, so it cannot take them from github.com/miekg/pkcs11). The worker
// package's tests check them against that library.
const (
	CKM_RSA_PKCS       = 0x0001
	CKM_RSA_PKCS_OAEP  = 0x0009
	CKM_RSA_PKCS_PSS   = 0x000D
	CKM_ECDSA          = 0x1041
	CKM_ECDH1_DERIVE   = 0x1050
	CKM_SHA_1          = 0x0220
	CKM_SHA224         = 0x0255
	CKM_SHA256         = 0x0250
	CKM_SHA384         = 0x0260
	CKM_SHA512         = 0x0270
	CKG_MGF1_SHA1      = 0x0001
	CKG_MGF1_SHA256    = 0x0002
	CKG_MGF1_SHA384    = 0x0003
	CKG_MGF1_SHA512    = 0x0004
	CKG_MGF1_SHA224    = 0x0005
	CKK_RSA            = 0x0000
	CKK_EC             = 0x0003
	CKF_LOGIN_REQUIRED = 0x0004

	CKF_USER_PIN_INITIALIZED          = 0x0008
	CKF_PROTECTED_AUTHENTICATION_PATH = 0x0100
	CKF_TOKEN_INITIALIZED             = 0x0400
	CKF_USER_PIN_COUNT_LOW            = 0x00010000
	CKF_USER_PIN_FINAL_TRY            = 0x00020000
	CKF_USER_PIN_LOCKED               = 0x00040000
	CKF_USER_PIN_TO_BE_CHANGED        = 0x00080000
)

// MechanismName returns the CKM_ name of the mechanisms smimed uses, with
// what they are for, or the number in hex.
func MechanismName(m uint) string {
	switch m {
	case CKM_RSA_PKCS:
		return "CKM_RSA_PKCS (RSA PKCS #1 v1.5)"
	case CKM_RSA_PKCS_OAEP:
		return "CKM_RSA_PKCS_OAEP (RSA-OAEP decryption)"
	case CKM_RSA_PKCS_PSS:
		return "CKM_RSA_PKCS_PSS (RSA-PSS signatures)"
	case CKM_ECDSA:
		return "CKM_ECDSA (ECDSA signatures)"
	case CKM_ECDH1_DERIVE:
		return "CKM_ECDH1_DERIVE (ECDH key agreement)"
	}
	return "mechanism 0x" + hex(m)
}

func hex(v uint) string {
	const digits = "0123456789ABCDEF"
	if v == 0 {
		return "0"
	}
	var b []byte
	for v > 0 {
		b = append([]byte{digits[v&0xF]}, b...)
		v >>= 4
	}
	return string(b)
}
