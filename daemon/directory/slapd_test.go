package directory

import (
	"github.com/smimed/smimed/internal/testldap"
	"net"
	"testing"
)

// freeAddr returns a loopback address with a port nobody listens on.
func freeAddr(tb testing.TB) string { return testldap.FreeAddr(tb) }

// listenSilent returns the address of a loopback listener that accepts
// connections and never answers.
func listenSilent(tb testing.TB) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), nil
}
