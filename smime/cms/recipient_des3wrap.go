package cms

import (
	"crypto/cipher"
	"crypto/des"
	"crypto/sha1"
	"crypto/subtle"
	"errors"
	"fmt"
)

// errDES3WrapIntegrity is the integrity failure of Triple-DES key unwrap.
var errDES3WrapIntegrity = errors.New("Triple-DES key wrap integrity check failed")

// des3WrapIV is the fixed IV of the outer encryption in RFC 3217 §3.
var des3WrapIV = []byte{0x4a, 0xdd, 0xa2, 0x2c, 0x79, 0xe8, 0x21, 0x05}

// unwrapDES3 implements the Triple-DES key unwrap of RFC 3217 §3.2 for a
// 24-byte Triple-DES content-encryption key wrapped under a 24-byte kek. It
// exists to read legacy des-ede3-cbc messages to EC recipients (OpenSSL
// wraps their content key this way); this package never writes it.
func unwrapDES3(kek, wrapped []byte) ([]byte, error) {
	if len(wrapped) != 40 {
		return nil, fmt.Errorf("Triple-DES wrapped key is %d bytes, want 40", len(wrapped))
	}
	block, err := des.NewTripleDESCipher(kek)
	if err != nil {
		return nil, err
	}
	// Steps 2-4: undo the outer encryption and the octet reversal.
	temp := make([]byte, len(wrapped))
	cipher.NewCBCDecrypter(block, des3WrapIV).CryptBlocks(temp, wrapped)
	for i, j := 0, len(temp)-1; i < j; i, j = i+1, j-1 {
		temp[i], temp[j] = temp[j], temp[i]
	}
	iv, temp1 := temp[:8], temp[8:]
	// Steps 5-7: undo the inner encryption and check the CMS key checksum.
	cekicv := make([]byte, len(temp1))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(cekicv, temp1)
	clear(temp)
	cek, icv := cekicv[:24], cekicv[24:]
	sum := sha1.Sum(cek)
	if subtle.ConstantTimeCompare(sum[:8], icv) != 1 {
		clear(cekicv)
		return nil, errDES3WrapIntegrity
	}
	// Step 8: every key octet has odd parity.
	for _, b := range cek {
		b ^= b >> 4
		b ^= b >> 2
		b ^= b >> 1
		if b&1 != 1 {
			clear(cekicv)
			return nil, errDES3WrapIntegrity
		}
	}
	return cek, nil
}
