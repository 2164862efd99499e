package sas

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// Vectors from spec/dps-protocol.md §3.1.
func TestDeriveKeyVectors(t *testing.T) {
	tests := []struct{ group, id, want string }{
		{"8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==", "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6", "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="},
		{"oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA==", "breakroom499-contoso-tstrsd-007", "JC8F96eayuQwwz+PkE7IzjH2lIAjCUnAa61tDigBnSs="},
		{"oiK77Oy7rBw8YB6IS6ukRChAw+Yq6GC61RMrPLSTiOOtdI+XDu0LmLuNm11p+qv2I+adqGUdZHm46zXAQdZoOA==", "mainbuilding167-contoso-hpsd-088", "6uejA9PfkQgmYylj8Zerp3kcbeVrGZ172YLa7VSnJzg="},
		{"Y2FwdHVyZS1ncm91cC1wcmltYXJ5LWtleS1ieXRlcyE=", "capture-grpdev-01", "VeyaSLiVReNSBXaianGj6Xp5/S+fMBYN6tRVH4VnAPg="},
	}
	for _, tt := range tests {
		got, err := DeriveKey(tt.group, tt.id)
		if err != nil || got != tt.want {
			t.Errorf("DeriveKey(%s) = %q, %v; want %q", tt.id, got, err, tt.want)
		}
	}
}

func TestVerifyVariants(t *testing.T) {
	const key = "Jsm0lyGpjaVYVP2g3FnmnmG9dI/9qU24wNoykUmermc="
	const id = "sn-007-888-abc-mac-a1-b2-c3-d4-e5-f6"
	tests := []struct{ name, token string }{
		{"encoded", "SharedAccessSignature sr=0ne00111111%2Fregistrations%2F" + id + "&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration"},
		{"node", "SharedAccessSignature sr=0ne00111111/registrations/" + id + "&sig=%2F%2Beah6KDNGyh0EVauDWy8TsgRl239ASFozi9g%2BrShXg%3D&skn=registration&se=1700000000"},
		{"c-lower", "SharedAccessSignature se=1700000000&sr=0ne00111111%2fregistrations%2f" + id + "&sig=LwAx%2BRfQDq37RAHvptYP8R3382xvZ%2FBntAGlh8Wmu18%3D"},
		{"plus-as-space", "SharedAccessSignature sr=0ne00111111/registrations/" + id + "&sig=/ eah6KDNGyh0EVauDWy8TsgRl239ASFozi9g rShXg=&se=1700000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := Parse(tt.token)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tok.VerifyBase64(key) {
				t.Errorf("Verify = false, want true")
			}
			if want := "0ne00111111/registrations/" + id; !strings.EqualFold(tok.Resource, want) {
				t.Errorf("Resource = %q, want %q", tok.Resource, want)
			}
			if tok.VerifyBase64("8isrFI1sGsIlvvFSSFRiMfCNzv21fjbE/+ah/lSh3lF8e2YG1Te7w1KpZhJFFXJrqYKi9yegxkqIChbqOS9Egw==") {
				t.Errorf("verified with the group key")
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, s := range []string{
		"", "Bearer x", "SharedAccessSignature ", "SharedAccessSignature sr=a&sig=b",
		"SharedAccessSignature sr=a&sr=b&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1",
		"SharedAccessSignature sr=a&sig=notbase64!&se=1",
		"SharedAccessSignature sr=a&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=soon",
		"SharedAccessSignature sr=%zz&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1",
		"SharedAccessSignature " + strings.Repeat("a", MaxTokenLen),
	} {
		if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%.40q) err = %v, want ErrMalformed", s, err)
		}
	}
}

func TestBuildRoundTripAndExpiry(t *testing.T) {
	key := "c2VjcmV0LWtleS1mb3ItdGVzdHMtMTIzNDU2Nzg5MA=="
	now := time.Unix(1_700_000_000, 0)
	s, err := Build("host.example:8443", key, "provisioningserviceowner", now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.VerifyBase64(key) || tok.KeyName != "provisioningserviceowner" || tok.Resource != "host.example:8443" {
		t.Fatalf("round trip failed: %+v", tok)
	}
	if err := tok.CheckExpiry(now, DefaultSkew); err != nil {
		t.Errorf("fresh token: %v", err)
	}
	if err := tok.CheckExpiry(now.Add(2*time.Hour), DefaultSkew); !errors.Is(err, ErrExpired) {
		t.Errorf("expired token: err = %v, want ErrExpired", err)
	}
	if err := tok.CheckExpiry(now.Add(time.Hour+time.Minute), DefaultSkew); err != nil {
		t.Errorf("within skew: %v", err)
	}
}

func TestParseConnectionString(t *testing.T) {
	cs, err := ParseConnectionString("HostName=default.localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VjcmV0")
	if err != nil {
		t.Fatal(err)
	}
	if cs.HostName != "default.localhost:8443" || cs.SharedAccessKeyName != "provisioningserviceowner" || cs.SharedAccessKey != "c2VjcmV0" {
		t.Errorf("got %+v", cs)
	}
	if got := cs.String(); got != "HostName=default.localhost:8443;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=c2VjcmV0" {
		t.Errorf("String() = %q", got)
	}
	for _, bad := range []string{"", "HostName=x", "SharedAccessKey=c2VjcmV0", "HostName=x;SharedAccessKey=!!", "HostName=x;HostName=y;SharedAccessKey=c2VjcmV0", "junk"} {
		if _, err := ParseConnectionString(bad); !errors.Is(err, ErrConnectionString) {
			t.Errorf("ParseConnectionString(%q) err = %v", bad, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("SharedAccessSignature sr=0ne00111111%2Fregistrations%2Fx&sig=2srIk05%2FHc3kiyY2AcAwJosiRYk6C6jOscAYhKLO2L8%3D&se=1700000000&skn=registration")
	f.Add("SharedAccessSignature sr=&sig=&se=")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := Parse(s)
		if err == nil {
			_ = tok.VerifyBase64("c2VjcmV0")
			_ = tok.CheckExpiry(time.Now(), DefaultSkew)
		}
	})
}

func FuzzParseConnectionString(f *testing.F) {
	f.Add("HostName=a;SharedAccessKeyName=b;SharedAccessKey=c2VjcmV0")
	f.Add(";;=;")
	f.Fuzz(func(t *testing.T, s string) {
		cs, err := ParseConnectionString(s)
		if err == nil {
			if _, err := ParseConnectionString(cs.String()); err != nil {
				t.Fatalf("re-parse of %q failed: %v", cs.String(), err)
			}
		}
	})
}
