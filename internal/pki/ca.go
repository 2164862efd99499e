// Package pki creates and loads the local certificate authority of a
// deployment and issues the server certificates it serves.
//
// On first start a node creates a CA (ca.pem, ca-key.pem) in its data
// directory; every server certificate it serves is signed by that CA, so a
// client trusts the whole deployment by trusting one PEM file. Certificates
// for names that are only known at run time (an instance's service host
// {name}.{domain}, a simulated hub) are minted on demand from the TLS SNI,
// bounded by an allow function and a cache.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// File names inside a certificate directory.
const (
	CAFile    = "ca.pem"
	CAKeyFile = "ca-key.pem"
)

// CA is a certificate authority able to sign server certificates. It is
// safe for concurrent use.
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	Key     crypto.Signer
}

// NewCA creates an in-memory CA valid for ten years.
func NewCA(commonName string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"opendps"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", der), Key: key}, nil
}

// LoadOrCreateCA loads dir/ca.pem and dir/ca-key.pem, creating both (and
// dir) when neither exists. One file without the other is an error: the
// operator must fix it rather than have the deployment silently re-keyed.
func LoadOrCreateCA(dir string) (*CA, error) {
	certPath, keyPath := filepath.Join(dir, CAFile), filepath.Join(dir, CAKeyFile)
	certPEM, errC := os.ReadFile(certPath)
	keyPEM, errK := os.ReadFile(keyPath)
	switch {
	case errC == nil && errK == nil:
		return ParseCA(certPEM, keyPEM)
	case errors.Is(errC, os.ErrNotExist) && errors.Is(errK, os.ErrNotExist):
	default:
		return nil, fmt.Errorf("pki: need both %s and %s (%v; %v)", certPath, keyPath, errC, errK)
	}
	ca, err := NewCA("opendps local CA")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, pemBlock("PRIVATE KEY", der), 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// ParseCA parses a PEM certificate and PEM private key (PKCS#8, EC or PKCS#1).
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA certificate: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: CA key: %w", err)
	}
	return &CA{Cert: cert, CertPEM: pemBlock("CERTIFICATE", cert.Raw), Key: key}, nil
}

// ParsePrivateKey parses the first PEM private key block.
func ParsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	for rest := keyPEM; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM private key")
		}
		if k, err := x509.ParsePKCS8PrivateKey(b.Bytes); err == nil {
			if s, ok := k.(crypto.Signer); ok {
				return s, nil
			}
		}
		if k, err := x509.ParseECPrivateKey(b.Bytes); err == nil {
			return k, nil
		}
		if k, err := x509.ParsePKCS1PrivateKey(b.Bytes); err == nil {
			return k, nil
		}
	}
}

// Issue signs a leaf certificate for names (DNS names or IP addresses),
// usable for both server and client authentication, valid for ttl.
func (ca *CA) Issue(names []string, ttl time.Duration) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	cn := "opendps"
	if len(names) > 0 {
		cn = names[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"opendps"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if n != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// CertPool returns a pool holding only this CA.
func (ca *CA) CertPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ClientTLS returns a client configuration trusting only this CA.
func (ca *CA) ClientTLS() *tls.Config {
	return &tls.Config{RootCAs: ca.CertPool(), MinVersion: tls.VersionTLS12}
}

// Minter serves certificates for TLS handshakes: a default certificate for
// the configured names, and, for an SNI name that allow accepts, a
// certificate minted for that name and cached. It is safe for concurrent use.
type Minter struct {
	ca    *CA
	def   tls.Certificate
	allow func(host string) bool

	mu    sync.Mutex
	cache map[string]*tls.Certificate // guarded by mu; bounded by maxMinted
}

const (
	maxMinted = 4096
	leafTTL   = 397 * 24 * time.Hour
)

// NewMinter issues the default certificate for names. allow may be nil (no
// on-demand certificates).
func NewMinter(ca *CA, names []string, allow func(host string) bool) (*Minter, error) {
	def, err := ca.Issue(names, leafTTL)
	if err != nil {
		return nil, err
	}
	return &Minter{ca: ca, def: def, allow: allow, cache: map[string]*tls.Certificate{}}, nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (m *Minter) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" || m.allow == nil || m.def.Leaf.VerifyHostname(name) == nil || !m.allow(name) {
		return &m.def, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.cache[name]; ok && time.Until(c.Leaf.NotAfter) > 24*time.Hour {
		return c, nil
	}
	if len(m.cache) >= maxMinted {
		clear(m.cache)
	}
	c, err := m.ca.Issue([]string{name}, leafTTL)
	if err != nil {
		return nil, err
	}
	m.cache[name] = &c
	return &c, nil
}

// ServerTLS returns a server configuration using getCert. Client
// certificates are requested but not required nor verified here (X.509
// device attestation verifies them against enrollments).
func ServerTLS(getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{
		GetCertificate: getCert,
		MinVersion:     tls.VersionTLS12,
		ClientAuth:     tls.RequestClientCert,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// StaticCertificate loads an operator-supplied certificate and key.
func StaticCertificate(certFile, keyFile string) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("pki: load %s: %w", certFile, err)
	}
	return func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil }, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// EncodePEM returns der as a PEM block of the given type.
func EncodePEM(typ string, der []byte) []byte { return pemBlock(typ, der) }

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// IssueRegion signs the certificate of a region on the peer link between
// regions (internal/peer): URI SAN uri (opendps-region://{region}) plus
// names, for both server and client authentication, valid for ttl.
func (ca *CA) IssueRegion(uri *url.URL, names []string, ttl time.Duration) (tls.Certificate, error) {
	c, err := ca.Issue(names, ttl)
	if err != nil {
		return tls.Certificate{}, err
	}
	key := c.PrivateKey.(*ecdsa.PrivateKey)
	tmpl := *c.Leaf
	tmpl.Raw, tmpl.RawTBSCertificate, tmpl.Signature = nil, nil, nil
	tmpl.URIs = []*url.URL{uri}
	tmpl.Subject = pkix.Name{CommonName: uri.String(), Organization: []string{"opendps"}}
	tmpl.SerialNumber = randSerial()
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}
