package instance

import (
	"regexp"
	"strings"
	"testing"
)

// armName is the ARM pattern without lookaheads; the lookaheads are
// checked by hand below.
var armName = regexp.MustCompile(`^[a-zA-Z0-9-]{2,49}[a-zA-Z0-9]$`)

func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"dps1", "ab", "-abc", "12345", "a-1", "é-abc", strings.Repeat("a", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := armName.MatchString(s) && !regexp.MustCompile(`^[0-9]+$`).MatchString(s) && !strings.HasPrefix(s, "-")
		if got := ValidateName(s) == nil; got != want {
			t.Errorf("ValidateName(%q) ok = %v, ARM pattern says %v", s, got, want)
		}
	})
}

func FuzzParseRights(f *testing.F) {
	for _, s := range []string{"EnrollmentRead", "a,b", ",,", "ServiceConfig, DeviceConnect", "enrollmentwrite ,registrationstatuswrite"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseRights(s)
		if err != nil {
			return
		}
		again, err := ParseRights(got)
		if err != nil || again != got {
			t.Errorf("ParseRights(%q) = %q, not canonical: %q, %v", s, got, again, err)
		}
	})
}

func FuzzConnectionStringMasking(f *testing.F) {
	f.Add(hubCS("h.localhost"))
	f.Add("HostName=h;SharedAccessKey=****")
	f.Add(";;=;")
	f.Fuzz(func(t *testing.T, s string) {
		masked := MaskConnectionString(s)
		if strings.Contains(s, "SharedAccessKey=") && len(s) > 40 && strings.Contains(masked, s) {
			t.Errorf("MaskConnectionString leaked the input: %q", masked)
		}
		maskedHost(s)
	})
}
