//go:build unix

package dbus

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	godbus "github.com/godbus/dbus/v5"

	"github.com/smimed/smimed/ipc"
)

// argDoc documents one argument. The D-Bus type comes from the Go signature
// of the exported method, so the XML cannot disagree with what is served.
type argDoc struct {
	name string
	doc  string
	// json, when not nil, is a value of the Go type whose JSON the string
	// argument carries.
	json any
	// opts, when not nil, is the request struct whose fields are the keys of
	// the a{sv} argument.
	opts any
}

// methodDoc documents one method of Interface.
type methodDoc struct {
	name string
	doc  string
	in   []argDoc
	out  []argDoc
}

// signalDoc documents one signal of Interface (signals have no arguments).
type signalDoc struct {
	name string
	doc  string
}

func fdArgs(opts any, what string) []argDoc {
	return []argDoc{
		{name: "options", opts: opts, doc: "what to do; unknown keys are ignored"},
		{name: "in", doc: "readable file descriptor with the " + what + "; the daemon reads it to EOF and closes its copy"},
		{name: "out", doc: "writable file descriptor for the result; the daemon closes its copy before replying"},
	}
}

func bytesArgs(opts any, what string) []argDoc {
	return []argDoc{
		{name: "options", opts: opts, doc: "the same options as the file-descriptor variant"},
		{name: "data", doc: fmt.Sprintf("the %s, at most %d bytes", what, BytesLimit)},
	}
}

func statusOut() argDoc {
	return argDoc{name: "status", json: ipc.MessageStatus{}, doc: "JSON message status, the status JSON of smimectl"}
}

// methodDocs lists the methods of Interface in the order of the XML.
func methodDocs() []methodDoc {
	certs := argDoc{name: "certificates", json: []ipc.Certificate{}, doc: "JSON array of certificates"}
	return []methodDoc{
		{name: "Status", doc: "The daemon's state, as shown by `smimectl status`.",
			out: []argDoc{{name: "status", json: ipc.DaemonStatus{}, doc: "JSON daemon status"}}},
		{name: "Identities", doc: "The user's own identities that can sign or decrypt, from the keystore and tokens.",
			out: []argDoc{{name: "identities", json: []ipc.Identity{}, doc: "JSON array of identities"}}},
		{name: "Tokens", doc: "The PKCS#11 tokens that are present.",
			out: []argDoc{{name: "tokens", json: []ipc.Token{}, doc: "JSON array of tokens"}}},
		{name: "ImportPKCS12", doc: "Imports a PKCS#12 file as a new identity. The key's new passphrase is always asked through a prompt. Emits IdentitiesChanged after success.",
			in: []argDoc{
				{name: "data", doc: "the PKCS#12 file"},
				{name: "options", doc: `"password" (ay): the file's password; absent means the daemon asks the user`},
			},
			out: []argDoc{{name: "identity", json: ipc.Identity{}, doc: "JSON identity that was imported"}}},
		{name: "TrustAdd", doc: "Adds trust anchors. Emits CertificatesChanged when any was added.",
			in:  []argDoc{{name: "certificates", doc: "PEM or DER certificates"}},
			out: []argDoc{{name: "added", json: []ipc.Certificate{}, doc: "JSON array of the anchors added"}}},
		{name: "TrustList", doc: "The user's trust anchors.",
			out: []argDoc{certs}},
		{name: "TrustRemove", doc: "Removes trust anchors: the anchor whose SHA-256 fingerprint (hex, as bytes) is given, or the anchors in the PEM/DER data. Emits CertificatesChanged when any was removed.",
			in:  []argDoc{{name: "certificates", doc: "a hex SHA-256 fingerprint, or PEM or DER certificates"}},
			out: []argDoc{{name: "removed", json: []ipc.Certificate{}, doc: "JSON array of the anchors removed"}}},
		{name: "CertsAdd", doc: "Adds recipients' certificates to the address book. Emits CertificatesChanged when any was added.",
			in:  []argDoc{{name: "data", doc: "PEM, DER, or a certs-only or signed S/MIME message"}},
			out: []argDoc{{name: "added", json: []ipc.Certificate{}, doc: "JSON array of the certificates added"}}},
		{name: "CertsList", doc: "The address book.",
			out: []argDoc{certs}},
		{name: "CertsFind", doc: "The usable certificates for one address (address book, then the LDAP directory), with the reason when there is none.",
			in:  []argDoc{{name: "email", doc: "the recipient's address"}},
			out: []argDoc{{name: "lookup", json: ipc.CertLookup{}, doc: "JSON lookup result"}}},
		{name: "Sign", doc: "Signs the MIME message read from in and writes the signed message to out.",
			in: fdArgs(ipc.SignRequest{}, "MIME message")},
		{name: "Encrypt", doc: "Encrypts (and first signs when options.sign) the MIME message read from in and writes the result to out. The sender is always a recipient.",
			in: fdArgs(ipc.EncryptRequest{}, "MIME message")},
		{name: "Decrypt", doc: "Opens every S/MIME layer of the message read from in, decrypting and verifying, and writes the innermost protected entity to out.",
			in: fdArgs(ipc.OpenRequest{}, "S/MIME message"), out: []argDoc{statusOut()}},
		{name: "Verify", doc: "Checks the signatures of the message read from in without decrypting and writes the signed content to out.",
			in: fdArgs(ipc.OpenRequest{}, "S/MIME message"), out: []argDoc{statusOut()}},
		{name: "SignBytes", doc: "Sign for small messages, as a byte array.",
			in: bytesArgs(ipc.SignRequest{}, "MIME message"), out: []argDoc{{name: "signed", doc: "the signed message"}}},
		{name: "EncryptBytes", doc: "Encrypt for small messages, as a byte array.",
			in: bytesArgs(ipc.EncryptRequest{}, "MIME message"), out: []argDoc{{name: "encrypted", doc: "the encrypted message"}}},
		{name: "DecryptBytes", doc: "Decrypt for small messages, as a byte array.",
			in: bytesArgs(ipc.OpenRequest{}, "S/MIME message"), out: []argDoc{{name: "content", doc: "the innermost protected entity"}, statusOut()}},
		{name: "VerifyBytes", doc: "Verify for small messages, as a byte array.",
			in: bytesArgs(ipc.OpenRequest{}, "S/MIME message"), out: []argDoc{{name: "content", doc: "the signed content"}, statusOut()}},
		{name: "RegisterPromptAgent", doc: "Registers a prompt agent: from now on, the prompts (PIN, passphrase, confirmation) of the caller's own requests are sent to the object agent on the caller's connection, which implements " + AgentInterface + " (see the top of this file), instead of being shown by pinentry. Requests of other connections are not affected. One agent per connection: registering again replaces it; UnregisterPromptAgent or leaving the bus drops it. NotAuthorized when prompt agents are turned off (prompt.allow_agents).",
			in: []argDoc{{name: "agent", doc: "path of the agent object on the caller's own connection"}}},
		{name: "UnregisterPromptAgent", doc: "Drops the caller's prompt agent: its prompts are shown by pinentry again. Does nothing when none is registered."},
	}
}

// agentMethodDocs lists the methods of AgentInterface, which a client
// implements on its own connection (agentObject in this package).
func agentMethodDocs() []methodDoc {
	return []methodDoc{
		{name: "Ask", doc: "Shows one prompt and returns when the user has answered it. PIN and passphrase prompts return the secret the user entered; a confirm prompt returns an empty array when the user allowed the operation; a notice stays on screen until Cancel and then returns an empty array. The user cancelling or declining is the error " + DBusErrorName(ipc.Cancelled) + "; any other error fails the request's prompt. A wrong secret is never retried automatically: each Ask is one user action, and the next carries the failure in its error key.",
			in: []argDoc{
				{name: "id", doc: "the prompt's number, for Cancel"},
				{name: "request", opts: ipc.PromptRequest{}, doc: "what is asked: kind (pin, passphrase, confirm or notice) and operation (sign, decrypt, unlock or import); description, title and error are ready to show, cleaned of control characters; the other keys are the raw, untrusted parts they were made from; tries_left is shown when positive; empty values are left out"},
			},
			out: []argDoc{{name: "secret", doc: fmt.Sprintf("the PIN or passphrase, at most %d bytes; empty for confirm and notice", MaxAgentSecretBytes)}}},
		{name: "Cancel", doc: "The daemon no longer waits for prompt id (its request was cancelled, or the notice is over): take the prompt down. Sent without expecting a reply; it may overtake its Ask, and may name a prompt already answered.",
			in: []argDoc{{name: "id", doc: "the id given to Ask"}}},
	}
}

// signalDocs lists the signals of Interface.
func signalDocs() []signalDoc {
	return []signalDoc{
		{name: "IdentitiesChanged", doc: "The user's identities or tokens changed (an import, a token inserted or removed): re-read Identities and Tokens."},
		{name: "CertificatesChanged", doc: "Trust anchors or the address book changed: re-read what you show."},
	}
}

// methodSignatures returns the D-Bus in and out signatures of the exported
// method name of object, one entry per argument.
func methodSignatures(name string) (in, out []string, ok bool) {
	return methodSignaturesOf(reflect.TypeFor[object](), name)
}

// methodSignaturesOf returns the D-Bus in and out signatures of the
// exported method name of the exported type t.
func methodSignaturesOf(typ reflect.Type, name string) (in, out []string, ok bool) {
	m, ok := typ.MethodByName(name)
	if !ok {
		return nil, nil, false
	}
	t := m.Type
	messageType, errorType := reflect.TypeFor[godbus.Message](), reflect.TypeFor[*godbus.Error]()
	for i := 1; i < t.NumIn(); i++ { // 0 is the receiver
		if t.In(i) == messageType {
			continue
		}
		in = append(in, godbus.SignatureOfType(t.In(i)).String())
	}
	for i := range t.NumOut() {
		if t.Out(i) == errorType {
			continue
		}
		out = append(out, godbus.SignatureOfType(t.Out(i)).String())
	}
	return in, out, true
}

// introspectionXML returns the introspection data of ObjectPath, exactly as
// the server returns it from org.freedesktop.DBus.Introspectable.Introspect
// and as checked into docs/org.smimed.Smimed1.xml.
func introspectionXML() (string, error) {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!--
  smimed D-Bus API, version 1: bus name ` + BusName + `, object ` + ObjectPath + `.
  This file is generated from package ipc/dbus; regenerate it with
    go test ./ipc/dbus -run TestIntrospectionXMLInDocs -update
  and a test fails when it differs from what the daemon serves.

  Conventions:
  - Only the daemon's own user may call it (checked on every call).
  - "options" (a{sv}) keys are listed in the org.smimed.Options annotation;
    unknown keys are ignored, a known key with another type is refused.
  - Structured results are JSON strings; org.smimed.JSON shows their shape.
    More fields may be added; the listed ones keep their meaning.
  - Messages travel as Unix file descriptors (type h): the daemon reads "in"
    to EOF and writes "out", and closes its copies before replying. The
    *Bytes variants take at most ` + fmt.Sprint(BytesLimit) + ` bytes and answer TooLarge above that.
  - A failed call returns only its D-Bus error, never a partial result or status.
  - Leaving the bus cancels the caller's requests.
  - The signals carry no arguments; a client re-reads what it shows.
  - Malformed arguments are refused with org.freedesktop.DBus.Error.InvalidArgs.

  Errors (D-Bus error name, then the human-readable message as the only
  string argument):
`)
	docs := errorDocs()
	for _, n := range ipc.AllErrorNames() {
		fmt.Fprintf(&b, "    %s: %s\n", DBusErrorName(n), docs[n])
	}
	b.WriteString(`
  Prompt agents (RegisterPromptAgent): a client with a window of its own
  may show the PIN and passphrase prompts of its own requests itself. It
  exports an object on its connection, registers its path, and while the
  registration lasts the daemon calls, instead of running pinentry:
`)
	if err := writeAgentSummary(&b); err != nil {
		return "", err
	}
	b.WriteString(`  Ask is called while the client's request waits for its reply, so the
  client must dispatch incoming calls concurrently. Only the daemon's user
  may register, and only the owner of ` + BusName + ` should be answered.
  The machine policy can turn agents off (prompt.allow_agents).
-->
<node>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml_data" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="org.freedesktop.DBus.Peer">
    <method name="Ping"/>
    <method name="GetMachineId">
      <arg name="machine_uuid" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="` + Interface + `">
`)
	if err := writeMethods(&b, reflect.TypeFor[object](), methodDocs()); err != nil {
		return "", err
	}
	for _, s := range signalDocs() {
		fmt.Fprintf(&b, "    <!-- %s -->\n", xmlComment(s.doc))
		fmt.Fprintf(&b, "    <signal name=\"%s\"/>\n", s.name)
	}
	b.WriteString("  </interface>\n</node>\n")
	return b.String(), nil
}

// writeMethods writes the <method> elements of docs, whose signatures come
// from the Go methods of typ.
func writeMethods(b *strings.Builder, typ reflect.Type, docs []methodDoc) error {
	for _, m := range docs {
		in, out, ok := methodSignaturesOf(typ, m.name)
		if !ok || len(in) != len(m.in) || len(out) != len(m.out) {
			return fmt.Errorf("ipc/dbus: the documentation of %s does not match its Go signature", m.name)
		}
		fmt.Fprintf(b, "    <!-- %s -->\n", xmlComment(m.doc))
		if len(in)+len(out) == 0 {
			fmt.Fprintf(b, "    <method name=\"%s\"/>\n", m.name)
			continue
		}
		fmt.Fprintf(b, "    <method name=\"%s\">\n", m.name)
		writeArgs(b, m.in, in, "in")
		writeArgs(b, m.out, out, "out")
		b.WriteString("    </method>\n")
	}
	return nil
}

// writeAgentSummary describes AgentInterface in plain text, for the comment
// at the top of the daemon's introspection XML (an XML comment cannot hold
// the interface's own XML, whose comments would end it).
func writeAgentSummary(b *strings.Builder) error {
	typ := reflect.TypeFor[agentObject]()
	fmt.Fprintf(b, "\n    interface %s\n", AgentInterface)
	for _, m := range agentMethodDocs() {
		in, out, ok := methodSignaturesOf(typ, m.name)
		if !ok || len(in) != len(m.in) || len(out) != len(m.out) {
			return fmt.Errorf("ipc/dbus: the documentation of %s.%s does not match its Go signature", AgentInterface, m.name)
		}
		sig := func(docs []argDoc, sigs []string) string {
			var parts []string
			for i, a := range docs {
				parts = append(parts, sigs[i]+" "+a.name)
			}
			return strings.Join(parts, ", ")
		}
		line := m.name + "(" + sig(m.in, in) + ")"
		if len(out) > 0 {
			line += " -> (" + sig(m.out, out) + ")"
		}
		b.WriteString("      " + line + "\n")
		wrap(b, m.doc, "          ")
		for _, a := range append(slices.Clone(m.in), m.out...) {
			text := a.name + ": " + a.doc
			if a.opts != nil {
				text += ". Keys: " + describeOptions(a.opts)
			}
			wrap(b, text, "          - ")
		}
	}
	b.WriteString("\n")
	return nil
}

// wrap writes text in lines of at most 78 columns, the first one after
// prefix and the others indented as far.
func wrap(b *strings.Builder, text, prefix string) {
	indent := strings.Repeat(" ", len(prefix))
	line := prefix
	for _, w := range strings.Fields(xmlComment(text)) {
		if len(line) > len(indent) && len(line)+1+len(w) > 78 {
			b.WriteString(strings.TrimRight(line, " ") + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	b.WriteString(strings.TrimRight(line, " ") + "\n")
}

// agentIntrospectionXML is what the agent object exported by
// Client.RegisterPromptAgent returns from Introspect.
func agentIntrospectionXML() (string, error) {
	var b strings.Builder
	b.WriteString(`<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!-- A prompt agent of smimed: see RegisterPromptAgent in docs/org.smimed.Smimed1.xml. -->
<node>
  <interface name="org.freedesktop.DBus.Introspectable">
    <method name="Introspect">
      <arg name="xml_data" type="s" direction="out"/>
    </method>
  </interface>
  <interface name="` + AgentInterface + `">
`)
	if err := writeMethods(&b, reflect.TypeFor[agentObject](), agentMethodDocs()); err != nil {
		return "", err
	}
	b.WriteString("  </interface>\n</node>\n")
	return b.String(), nil
}

func writeArgs(b *strings.Builder, docs []argDoc, sigs []string, dir string) {
	for i, a := range docs {
		fmt.Fprintf(b, "      <!-- %s: %s -->\n", a.name, xmlComment(a.doc))
		var notes []string
		if a.opts != nil {
			notes = append(notes, `<annotation name="org.smimed.Options" value="`+xmlAttr(describeOptions(a.opts))+`"/>`)
		}
		if a.json != nil {
			notes = append(notes, `<annotation name="org.smimed.JSON" value="`+xmlAttr(describeJSON(reflect.TypeOf(a.json)))+`"/>`)
		}
		if len(notes) == 0 {
			fmt.Fprintf(b, "      <arg name=\"%s\" type=\"%s\" direction=\"%s\"/>\n", a.name, sigs[i], dir)
			continue
		}
		fmt.Fprintf(b, "      <arg name=\"%s\" type=\"%s\" direction=\"%s\">\n", a.name, sigs[i], dir)
		for _, n := range notes {
			b.WriteString("        " + n + "\n")
		}
		b.WriteString("      </arg>\n")
	}
}

func xmlComment(s string) string { return strings.ReplaceAll(s, "--", "- -") }

func xmlAttr(s string) string {
	return strings.NewReplacer(`&`, "&amp;", `<`, "&lt;", `>`, "&gt;", `"`, "&quot;").Replace(s)
}
