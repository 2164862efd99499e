package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestCA(t testing.TB) *CA {
	t.Helper()
	ca, err := NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t)
	if !ca.Cert.IsCA || !ca.Cert.BasicConstraintsValid {
		t.Errorf("IsCA, BasicConstraintsValid = %v, %v, want true, true", ca.Cert.IsCA, ca.Cert.BasicConstraintsValid)
	}
	if got, want := ca.Cert.Subject.CommonName, "test CA"; got != want {
		t.Errorf("CN = %q, want %q", got, want)
	}
	if ca.Cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage = %v, want CertSign", ca.Cert.KeyUsage)
	}
	if err := ca.Cert.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if got, err := ParseCertificate(ca.CertPEM); err != nil || !got.Equal(ca.Cert) {
		t.Errorf("CertPEM does not hold Cert: %v", err)
	}
	if time.Until(ca.Cert.NotAfter) < 9*365*24*time.Hour {
		t.Errorf("NotAfter = %v, want about ten years from now", ca.Cert.NotAfter)
	}
}

func TestLoadOrCreateCA(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls") // does not exist yet
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA (create): %v", err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("%s mode = %v, want %v", CAKeyFile, got, want)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, CAFile)); err != nil || !bytes.Equal(b, ca.CertPEM) {
		t.Errorf("%s does not hold the CA certificate (err %v)", CAFile, err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(tmps) != 0 {
		t.Errorf("temporary files left behind: %v", tmps)
	}

	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateCA (reload): %v", err)
	}
	if !again.Cert.Equal(ca.Cert) {
		t.Errorf("reloaded CA is a different certificate")
	}
	// The reloaded key must be the one that signed the certificate.
	leaf, err := again.Issue([]string{"localhost"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.Leaf.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("certificate issued by the reloaded CA does not verify against the original: %v", err)
	}
}

func TestLoadOrCreateCARefusesHalf(t *testing.T) {
	for _, keep := range []string{CAFile, CAKeyFile} {
		t.Run("only "+keep, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrCreateCA(dir); err != nil {
				t.Fatal(err)
			}
			other := CAKeyFile
			if keep == CAKeyFile {
				other = CAFile
			}
			if err := os.Remove(filepath.Join(dir, other)); err != nil {
				t.Fatal(err)
			}
			before, _ := os.ReadFile(filepath.Join(dir, keep))
			ca, err := LoadOrCreateCA(dir)
			if err == nil {
				t.Fatalf("LoadOrCreateCA with only %s = %v, want an error", keep, ca)
			}
			if !strings.Contains(err.Error(), CAFile) || !strings.Contains(err.Error(), CAKeyFile) {
				t.Errorf("error %q does not name both files", err)
			}
			if _, err := os.Stat(filepath.Join(dir, other)); !os.IsNotExist(err) {
				t.Errorf("%s was recreated (stat err %v)", other, err)
			}
			if after, _ := os.ReadFile(filepath.Join(dir, keep)); !bytes.Equal(before, after) {
				t.Errorf("%s was overwritten", keep)
			}
		})
	}
}

func TestLoadOrCreateCACorrupt(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, CAFile), []byte("not a certificate"), 0o644)
	os.WriteFile(filepath.Join(dir, CAKeyFile), []byte("not a key"), 0o600)
	if _, err := LoadOrCreateCA(dir); err == nil {
		t.Fatal("LoadOrCreateCA with corrupt files succeeded, want an error")
	}
}

func TestParsePrivateKey(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, _ := x509.MarshalPKCS8PrivateKey(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec)
	tests := []struct {
		name    string
		pem     []byte
		wantErr bool
	}{
		{"pkcs8", EncodePEM("PRIVATE KEY", pkcs8), false},
		{"sec1", EncodePEM("EC PRIVATE KEY", sec1), false},
		{"pkcs1", EncodePEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rk)), false},
		{"after a certificate", append(newTestCA(t).CertPEM, EncodePEM("PRIVATE KEY", pkcs8)...), false},
		{"empty", nil, true},
		{"no PEM", []byte("garbage"), true},
		{"certificate only", newTestCA(t).CertPEM, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := ParsePrivateKey(tt.pem)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("ParsePrivateKey err = %v, want error %v", err, tt.wantErr)
			}
			if err == nil && k == nil {
				t.Fatal("ParsePrivateKey = nil, nil")
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name    string
		names   []string
		wantCN  string
		wantDNS []string
		wantIPs []string
	}{
		{"dns and ip", []string{"localhost", "127.0.0.1", "::1", "dps.example.com"}, "localhost",
			[]string{"localhost", "dps.example.com"}, []string{"127.0.0.1", "::1"}},
		{"one name", []string{"a.localhost"}, "a.localhost", []string{"a.localhost"}, nil},
		{"ip first", []string{"10.0.0.1", "x"}, "10.0.0.1", []string{"x"}, []string{"10.0.0.1"}},
		{"empty names skipped", []string{"h", ""}, "h", []string{"h"}, nil},
		{"no names", nil, "opendps", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.Issue(tt.names, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			leaf := c.Leaf
			if got := leaf.Subject.CommonName; got != tt.wantCN {
				t.Errorf("CN = %q, want %q", got, tt.wantCN)
			}
			if !slices.Equal(leaf.DNSNames, tt.wantDNS) {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, tt.wantDNS)
			}
			var ips []string
			for _, ip := range leaf.IPAddresses {
				ips = append(ips, ip.String())
			}
			if !slices.Equal(ips, tt.wantIPs) {
				t.Errorf("IPAddresses = %q, want %q", ips, tt.wantIPs)
			}
			if leaf.IsCA {
				t.Error("leaf is a CA")
			}
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
			if !slices.Equal(leaf.ExtKeyUsage, wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, wantEKU)
			}
			if d := time.Until(leaf.NotAfter); d > time.Hour || d < 50*time.Minute {
				t.Errorf("NotAfter in %v, want about 1h", d)
			}
			if got, want := len(c.Certificate), 2; got != want {
				t.Fatalf("chain length = %d, want %d (leaf and CA)", got, want)
			}
			if !bytes.Equal(c.Certificate[1], ca.Cert.Raw) {
				t.Error("chain[1] is not the CA")
			}
			if _, ok := c.PrivateKey.(*ecdsa.PrivateKey); !ok {
				t.Errorf("PrivateKey is %T, want *ecdsa.PrivateKey", c.PrivateKey)
			}
			for _, eku := range wantEKU {
				opts := x509.VerifyOptions{Roots: ca.CertPool(), KeyUsages: []x509.ExtKeyUsage{eku}}
				if _, err := leaf.Verify(opts); err != nil {
					t.Errorf("Verify(%v): %v", eku, err)
				}
			}
			for _, n := range tt.names {
				if n == "" {
					continue
				}
				opts := x509.VerifyOptions{Roots: ca.CertPool(), DNSName: n}
				if _, err := leaf.Verify(opts); err != nil {
					t.Errorf("Verify(DNSName %q): %v", n, err)
				}
			}
			other := newTestCA(t)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.CertPool()}); err == nil {
				t.Error("leaf verifies against an unrelated CA")
			}
		})
	}
}

func TestClientTLS(t *testing.T) {
	ca := newTestCA(t)
	c := ca.ClientTLS()
	if c.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want >= TLS 1.2", c.MinVersion)
	}
	if c.RootCAs == nil || !c.RootCAs.Equal(ca.CertPool()) {
		t.Error("RootCAs is not the CA's pool")
	}
}

// allowLocalhost allows one-label names under .localhost.
func allowLocalhost(host string) bool {
	label, ok := strings.CutSuffix(host, ".localhost")
	return ok && label != "" && !strings.Contains(label, ".")
}

func TestMinterGetCertificate(t *testing.T) {
	ca := newTestCA(t)
	m, err := NewMinter(ca, []string{"localhost", "127.0.0.1"}, allowLocalhost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sni       string
		wantMint  string // "" = the default certificate
		wantNames []string
	}{
		{"", "", []string{"localhost"}},
		{"localhost", "", []string{"localhost"}},
		{"LOCALHOST.", "", []string{"localhost"}},
		{"127.0.0.1", "", []string{"localhost"}},
		{"default.localhost", "default.localhost", []string{"default.localhost"}},
		{"Other.LocalHost.", "other.localhost", []string{"other.localhost"}},
		{"a.b.localhost", "", []string{"localhost"}},    // disallowed: two labels
		{"evil.example.com", "", []string{"localhost"}}, // disallowed
	}
	for _, tt := range tests {
		t.Run(tt.sni, func(t *testing.T) {
			c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
			if err != nil {
				t.Fatal(err)
			}
			if gotDefault := c == &m.def; gotDefault != (tt.wantMint == "") {
				t.Fatalf("default certificate served = %v, want %v (DNSNames %q)", gotDefault, tt.wantMint == "", c.Leaf.DNSNames)
			}
			if !slices.Equal(c.Leaf.DNSNames, tt.wantNames) {
				t.Errorf("DNSNames = %q, want %q", c.Leaf.DNSNames, tt.wantNames)
			}
			if err := c.Leaf.CheckSignatureFrom(ca.Cert); err != nil {
				t.Errorf("certificate not signed by the CA: %v", err)
			}
			if tt.wantMint != "" {
				again, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.wantMint})
				if err != nil {
					t.Fatal(err)
				}
				if again != c {
					t.Errorf("second GetCertificate(%q) minted a new certificate, want the cached one", tt.wantMint)
				}
			}
		})
	}
	if got, want := len(m.cache), 2; got != want {
		t.Errorf("cache holds %d certificates, want %d", got, want)
	}
}

func TestMinterNilAllow(t *testing.T) {
	ca := newTestCA(t)
	m, err := NewMinter(ca, []string{"localhost"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "default.localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if c != &m.def {
		t.Errorf("nil allow minted %q, want the default certificate", c.Leaf.DNSNames)
	}
}

func TestMinterConcurrent(t *testing.T) {
	ca := newTestCA(t)
	m, err := NewMinter(ca, []string{"localhost"}, allowLocalhost)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, 8)
	for i := range certs {
		wg.Go(func() {
			c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "same.localhost"})
			if err != nil {
				t.Error(err)
			}
			certs[i] = c
		})
	}
	wg.Wait()
	for i, c := range certs {
		if c != certs[0] {
			t.Errorf("certs[%d] differs from certs[0]: one name minted twice", i)
		}
	}
}

// handshake runs a TLS handshake over net.Pipe between a server using m and
// a client trusting ca that asks for serverName.
func handshake(t *testing.T, m *Minter, roots *x509.CertPool, serverName string) (tls.ConnectionState, error) {
	t.Helper()
	sc, cc := net.Pipe()
	defer sc.Close()
	defer cc.Close()
	srv := tls.Server(sc, ServerTLS(m.GetCertificate))
	cli := tls.Client(cc, &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12})
	done := make(chan error, 1)
	go func() {
		err := srv.Handshake()
		if err != nil {
			sc.Close() // unblock the client
		}
		done <- err
	}()
	cliErr := cli.Handshake()
	if cliErr != nil {
		cc.Close() // unblock the server
	}
	<-done
	return cli.ConnectionState(), cliErr
}

func TestMinterHandshake(t *testing.T) {
	ca := newTestCA(t)
	m, err := NewMinter(ca, []string{"localhost", "127.0.0.1"}, allowLocalhost)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		serverName string
		roots      *x509.CertPool
		wantErr    bool
	}{
		{"localhost", ca.CertPool(), false},
		{"127.0.0.1", ca.CertPool(), false},
		{"default.localhost", ca.CertPool(), false},
		{"evil.example.com", ca.CertPool(), true},       // default served; name does not match
		{"localhost", newTestCA(t).CertPool(), true},    // untrusted CA
		{"default.localhost", x509.NewCertPool(), true}, // no roots
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			cs, err := handshake(t, m, tt.roots, tt.serverName)
			if gotErr := err != nil; gotErr != tt.wantErr {
				t.Fatalf("handshake err = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if err := cs.PeerCertificates[0].VerifyHostname(tt.serverName); err != nil {
				t.Errorf("served certificate is not for %q: %v", tt.serverName, err)
			}
		})
	}
}

func TestServerTLS(t *testing.T) {
	c := ServerTLS(nil)
	if c.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want >= TLS 1.2", c.MinVersion)
	}
	if got, want := c.ClientAuth, tls.RequestClientCert; got != want {
		t.Errorf("ClientAuth = %v, want %v (X.509 attestation verifies the chain itself)", got, want)
	}
	if !slices.Contains(c.NextProtos, "h2") || !slices.Contains(c.NextProtos, "http/1.1") {
		t.Errorf("NextProtos = %q, want h2 and http/1.1", c.NextProtos)
	}
}

// writeKeyPair writes c (leaf first) and its key as PEM files in dir.
func writeKeyPair(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, EncodePEM("CERTIFICATE", der)...)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, EncodePEM("PRIVATE KEY", kd), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestStaticCertificate(t *testing.T) {
	ca := newTestCA(t)
	issued, err := ca.Issue([]string{"dps.example.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := writeKeyPair(t, dir, issued)

	get, err := StaticCertificate(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, sni := range []string{"", "dps.example.com", "other.localhost"} {
		c, err := get(&tls.ClientHelloInfo{ServerName: sni})
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(c.Certificate[0], issued.Certificate[0]) {
			t.Errorf("SNI %q: served a different certificate", sni)
		}
	}

	otherCert, _ := writeKeyPair(t, t.TempDir(), mustIssue(t, ca, "x"))
	tests := []struct{ name, cert, key string }{
		{"missing cert", filepath.Join(dir, "none.pem"), keyFile},
		{"missing key", certFile, filepath.Join(dir, "none.pem")},
		{"key does not match", otherCert, keyFile},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := StaticCertificate(tt.cert, tt.key); err == nil {
				t.Error("StaticCertificate succeeded, want an error")
			}
		})
	}
}

func mustIssue(t *testing.T, ca *CA, names ...string) tls.Certificate {
	t.Helper()
	c, err := ca.Issue(names, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
