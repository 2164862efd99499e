package armtemplate

import (
	"encoding/json"
	"testing"

	"github.com/opendps/opendps/internal/pki"
)

func testCertPEM(t *testing.T) string {
	t.Helper()
	ca, err := pki.NewCA("armtemplate test")
	if err != nil {
		t.Fatal(err)
	}
	return string(ca.CertPEM)
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
