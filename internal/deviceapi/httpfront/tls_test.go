package httpfront_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/opendps/opendps/internal/model"
)

// selfSigned returns a self-signed device certificate with CN cn, as an
// X.509 device enrolled individually presents it.
func selfSigned(t *testing.T, cn string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsServer serves h over TLS, requesting (not requiring) client
// certificates as the device listener does (§13).
func tlsServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTLSClientCertificateReachesEngine(t *testing.T) {
	fe := &fakeEngine{result: assigned()}
	srv := tlsServer(t, newHandler(t, fe, 0))
	client := srv.Client()
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{selfSigned(t, testRegID)}

	r, err := http.NewRequest(http.MethodPut, srv.URL+regPath+apiQuery, strings.NewReader(`{"registrationId":"dev1"}`))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", jsonCT)
	resp, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Content-Type") != jsonCT {
		t.Fatalf("status %d, Content-Type %q; want 202 JSON", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got, want := resp.Header.Get("Location"), "https://"+srv.Listener.Addr().String()+regPath; got != want {
		t.Errorf("Location = %q, want %q", got, want)
	}
	var st model.RegistrationOperationStatus
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || st.Status != model.OpStatusAssigned {
		t.Errorf("body status %q, err %v", st.Status, err)
	}
	calls := fe.Calls()
	if len(calls) != 1 {
		t.Fatalf("engine calls = %d, want 1", len(calls))
	}
	req := calls[0].req
	if len(req.PeerCertificates) != 1 || req.PeerCertificates[0].Subject.CommonName != testRegID {
		t.Fatalf("PeerCertificates = %v, want the dev1 certificate", req.PeerCertificates)
	}
	if req.SASToken != "" || req.Transport != "https" || req.ClientAddr != "127.0.0.1" {
		t.Errorf("request = SAS %q transport %q addr %q; want \"\" https 127.0.0.1", req.SASToken, req.Transport, req.ClientAddr)
	}
}

func TestTLSWithoutClientCertificate(t *testing.T) {
	fe := &fakeEngine{result: assigning(0)}
	srv := tlsServer(t, newHandler(t, fe, 0))
	r, _ := http.NewRequest(http.MethodGet, srv.URL+opPath+apiQuery, strings.NewReader("{}"))
	r.Header.Set("Authorization", testSAS)
	resp, err := srv.Client().Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("Retry-After") != "2" {
		t.Fatalf("status %d Retry-After %q, want 202 2", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if c := fe.Calls(); len(c) != 1 || c[0].req.PeerCertificates != nil || c[0].req.SASToken != testSAS {
		t.Fatalf("engine calls = %+v", c)
	}
}
