module github.com/smimed/smimed

go 1.26.8

require (
	github.com/emersion/go-message v0.18.2
	github.com/godbus/dbus/v5 v5.2.4
	github.com/keybase/go-keychain v0.0.1
	github.com/pelletier/go-toml/v2 v2.4.3
	golang.org/x/crypto v0.58.0
	golang.org/x/sys v0.49.0
	software.sslmate.com/src/go-pkcs12 v0.7.4
)

require (
	github.com/go-ldap/ldap/v3 v3.4.15
	github.com/miekg/pkcs11 v1.1.2
)

require (
	github.com/Azure/go-ntlmssp v0.1.1 // indirect
	github.com/go-asn1-ber/asn1-ber v1.5.8 // indirect
	github.com/google/uuid v1.6.0 // indirect
)
