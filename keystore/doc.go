// Package keystore keeps software S/MIME identities — a certificate chain and
// its private key — in a store the OS provides: the Secret Service
// (gnome-keyring, KWallet) on Linux, the login keychain on macOS, DPAPI-
// protected files on Windows, or an encrypted-file vault where none of these
// exists (headless sessions, CI).
//
// Every private key is stored only encrypted under its own passphrase
// (scrypt + AES-256-GCM, bound to the identity; see blob.go and README.md),
// whatever the backend. A key is decrypted for one operation at a time,
// after asking the user for its passphrase through the [prompt.Prompter] the
// daemon passes in, and zeroed afterwards; machine policy may allow a short
// cache ([Options.CacheTTL]).
//
// Keys never leave the package: no method returns a private key or an
// encrypted blob. [Store.Signer] and [Store.Decrypter] return handles
// (crypto.Signer, crypto.Decrypter, and ECDH for EC keys) that perform one
// operation per call.
//
// Within the module, keystore depends on prompt/ only; only daemon/ depends
// on keystore.
package keystore
