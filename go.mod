module github.com/smimed/smimed

go 1.26.8

require software.sslmate.com/src/go-pkcs12 v0.7.4

require (
	github.com/emersion/go-message v0.18.2 // indirect
	github.com/godbus/dbus/v5 v5.2.4 // indirect
	github.com/keybase/go-keychain v0.0.1 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
)
