package mqttfront

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/opendps/opendps/internal/deviceapi/devreq"
)

func TestParseUsername(t *testing.T) {
	tests := []struct {
		in   string
		want username
		ok   bool
	}{
		{"0ne00000001/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
			username{"0ne00000001", "dev1", "2019-03-31", "azure-iot-provisioning-device/1.9.1"}, true},
		// C#: Uri.EscapeDataString; C: raw user agent with spaces, ';' and '/'.
		{"0ne0045B3C6/registrations/sn-007:a.b_c-/api-version=2019-03-31&ClientVersion=Microsoft.Azure.Devices.Provisioning.Client%2F1.19.0%20(.NET%206)",
			username{"0ne0045B3C6", "sn-007:a.b_c-", "2019-03-31", "Microsoft.Azure.Devices.Provisioning.Client/1.19.0 (.NET 6)"}, true},
		{"0ne00000001/registrations/dev1/api-version=2021-06-01&ClientVersion=prov_device_client/1.0 (Linux; x86_64) %zz",
			username{"0ne00000001", "dev1", "2021-06-01", "prov_device_client/1.0 (Linux; x86_64) %zz"}, true},
		// Python: urlencode order may differ; docs: no ClientVersion; keys in any case.
		{"0ne00000001/registrations/dev1/ClientVersion=py&api-version=2019-03-31", username{"0ne00000001", "dev1", "2019-03-31", "py"}, true},
		{"0ne00000001/Registrations/dev1/API-VERSION=2019-03-31", username{"0ne00000001", "dev1", "2019-03-31", ""}, true},
		{"0ne00000001/registrations/dev1", username{"0ne00000001", "dev1", "", ""}, true},
		{"0ne00000001/registrations/dev1/", username{"0ne00000001", "dev1", "", ""}, true},
		{"0ne00000001/registrations/dev1/api-version=2025-07-01-preview&x=1", username{"0ne00000001", "dev1", "2025-07-01-preview", ""}, true},
		{"", username{}, false},
		{"0ne00000001", username{}, false},
		{"0ne00000001/registrations", username{}, false},
		{"0ne00000001/registrations//api-version=2019-03-31", username{}, false},
		{"0ne00000001/devices/dev1/api-version=2019-03-31", username{}, false},
		{"scope/registrations/dev1/api-version=2019-03-31", username{}, false},
		{"0ne00000001/registrations/dev%201/api-version=2019-03-31", username{}, false},
		{"0ne00000001/registrations/dev1./api-version=2019-03-31", username{}, false},
		{"0ne00000001/registrations/dev1/api-version=bad", username{}, false},
		{"0ne00000001/registrations/" + strings.Repeat("a", 129) + "/api-version=2019-03-31", username{}, false},
		{"0ne00000001/registrations/dev1/api-version=2019-03-31&ClientVersion=" + strings.Repeat("x", 1100), username{}, false},
	}
	for _, tt := range tests {
		got, err := parseUsername(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseUsername(%q) = %+v, %v; want %+v, ok %v", devreq.Clip(tt.in), got, err, tt.want, tt.ok)
		}
	}
}

func TestParseTopic(t *testing.T) {
	tests := []struct {
		in   string
		want request
		ok   bool
	}{
		{registerPrefix + "$rid=be0c4900-2a38-41ba-b2eb-798aa3d94358", request{kindRegister, "be0c4900-2a38-41ba-b2eb-798aa3d94358", ""}, true},
		{registerPrefix + "$rid=1", request{kindRegister, "1", ""}, true},
		{registerPrefix + "$rid=%7Babc%7D&extra=1", request{kindRegister, "%7Babc%7D", ""}, true},
		{registerPrefix + "$rid=1&operationId=x", request{kindRegister, "1", ""}, true},
		{pollPrefix + "$rid=99&operationId=4.81be54c71574a264.bdb6dd6b-4895", request{kindPoll, "99", "4.81be54c71574a264.bdb6dd6b-4895"}, true},
		{pollPrefix + "operationId=op&$rid=99", request{kindPoll, "99", "op"}, true},
		{pollPrefix + "$rid=99&OperationID=op", request{kindPoll, "99", "op"}, true},
		{pollPrefix + "$rid=99", request{kindPoll, "99", ""}, true},
		{pollPrefix + "$rid=99&operationId=a&operationId=b", request{kindPoll, "99", "a"}, true},
		{registerPrefix, request{}, false},
		{registerPrefix + "$rid=", request{}, false},
		{registerPrefix + "$rid=1&$rid=2", request{}, false},
		{registerPrefix + "rid=1", request{}, false},
		{registerPrefix + "$RID=1", request{}, false},
		{registerPrefix + "$rid=a b", request{}, false},
		{registerPrefix + "$rid=a#", request{}, false},
		{registerPrefix + "$rid=a+", request{}, false},
		{registerPrefix + "$rid=a?b", request{}, false},
		{registerPrefix + "$rid=%", request{}, false},
		{registerPrefix + "$rid=%zz", request{}, false},
		{registerPrefix + "$rid=" + strings.Repeat("r", 257), request{}, false},
		{"$dps/registrations/PUT/iotdps-register/$rid=1", request{}, false},
		{"$dps/registrations/res/200/?$rid=1", request{}, false},
		{"devices/dev1/messages/events/", request{}, false},
		{"", request{}, false},
	}
	for _, tt := range tests {
		got, err := parseTopic(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseTopic(%q) = %+v, %v; want %+v, ok %v", devreq.Clip(tt.in), got, err, tt.want, tt.ok)
		}
	}
}

func TestResponseTopic(t *testing.T) {
	for _, tt := range []struct {
		status, retry int
		rid, want     string
	}{
		{202, 1, "be0c4900", "$dps/registrations/res/202/?$rid=be0c4900&retry-after=1"},
		{200, 0, "16fede9f", "$dps/registrations/res/200/?$rid=16fede9f"},
		{429, 7, "%7B1%7D", "$dps/registrations/res/429/?$rid=%7B1%7D&retry-after=7"},
		{401, 0, "1", "$dps/registrations/res/401/?$rid=1"},
	} {
		if got := responseTopic(tt.status, tt.rid, tt.retry); got != tt.want {
			t.Errorf("responseTopic(%d, %q, %d) = %q, want %q", tt.status, tt.rid, tt.retry, got, tt.want)
		}
	}
}

// The response topic patterns of the SDKs (§4.3): C# requires $rid first;
// Node parses the query; the embedded C SDK searches "retry-after=".
var (
	csharpRE = regexp.MustCompile(`^\$dps/registrations/res/(.*?)/\?\$rid=(.*?)$`)
	nodeRE   = regexp.MustCompile(`^\$dps\/registrations\/res\/(.*)\/\?(.*)$`)
)

// nodeRID reads $rid from a query as Node's querystring.parse does:
// split on '&', then at the first '=', then percent-decode leniently.
func nodeRID(query string) string {
	for kv := range strings.SplitSeq(query, "&") {
		if k, v, _ := strings.Cut(kv, "="); unescapeLenient(k) == "$rid" {
			return unescapeLenient(v)
		}
	}
	return ""
}

func unescapeLenient(s string) string {
	if d, err := url.QueryUnescape(s); err == nil {
		return d
	}
	return s
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{
		"0ne00000001/registrations/dev1/api-version=2019-03-31&ClientVersion=azure-iot-provisioning-device%2F1.9.1",
		"0ne00000001/registrations/dev1", "0ne/registrations/x/", "a/b/c/d/e", "0ne00000001/registrations/dev1/api-version=%zz",
		"0ne00000001/registrations/dev1/&&==&api-version=2019-03-31-preview", "\xff/registrations/\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseUsername(s)
		if err != nil {
			if u != (username{}) {
				t.Fatalf("error %v with a result %+v", err, u)
			}
			return
		}
		if devreq.ValidateScope(u.IDScope) != nil || devreq.ValidateRegistrationID(u.RegistrationID) != nil ||
			devreq.CheckAPIVersion(u.APIVersion) != nil {
			t.Fatalf("accepted %q as %+v", s, u)
		}
		if !strings.HasPrefix(s, u.IDScope+"/") || !strings.Contains(s, "/"+u.RegistrationID) {
			t.Fatalf("ids %+v are not those of %q", u, s)
		}
		if len(s) > maxUsernameLen || !utf8.ValidString(u.ClientVersion) {
			t.Fatalf("accepted %d bytes / invalid UTF-8", len(s))
		}
	})
}

func FuzzParseTopic(f *testing.F) {
	for _, s := range []string{
		registerPrefix + "$rid=be0c4900-2a38-41ba-b2eb-798aa3d94358",
		pollPrefix + "$rid=99606317&operationId=4.81be54c71574a264.bdb6dd6b",
		pollPrefix + "operationId=x&$rid=%F0%9F%98%80", registerPrefix + "$rid=1&$rid=1", registerPrefix + "$rid=\x00",
		"$dps/registrations/res/200/?$rid=1", registerPrefix + "$rid=ü&retry-after=3",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		r, err := parseTopic(topic)
		if err != nil {
			return
		}
		if r.kind != kindRegister && r.kind != kindPoll || !validRID(r.rid) {
			t.Fatalf("accepted %q as %+v", topic, r)
		}
		if !strings.Contains(topic, paramRID+"="+r.rid) {
			t.Fatalf("rid %q is not verbatim in %q", r.rid, topic)
		}
		// Every SDK finds the same rid, first, in the answer.
		for _, retry := range []int{0, 3} {
			rt := responseTopic(202, r.rid, retry)
			m := csharpRE.FindStringSubmatch(rt)
			if m == nil || m[1] != "202" {
				t.Fatalf("C# pattern does not match %q", rt)
			}
			if retry == 0 && m[2] != r.rid {
				t.Fatalf("C# reads rid %q from %q, want %q", m[2], rt, r.rid)
			}
			n := nodeRE.FindStringSubmatch(rt)
			if n == nil || n[1] != "202" {
				t.Fatalf("Node pattern does not match %q", rt)
			}
			if got, want := nodeRID(n[2]), unescapeLenient(r.rid); got != want {
				t.Fatalf("Node reads rid %q from %q, want %q", got, rt, want)
			}
			if (retry > 0) != strings.Contains(rt, "&retry-after=3") {
				t.Fatalf("retry-after in %q", rt)
			}
		}
	})
}
