package sas

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// ErrConnectionString is returned for a connection string that does not parse.
var ErrConnectionString = errors.New("sas: invalid connection string")

// ConnectionString is a parsed "HostName=...;SharedAccessKeyName=...;SharedAccessKey=..."
// string, as used by DPS service clients and IoT Hub service clients.
type ConnectionString struct {
	HostName            string
	SharedAccessKeyName string
	SharedAccessKey     string // base64
	DeviceID            string // hub device connection strings only
	Extra               map[string]string
}

// MaxConnectionStringLen bounds the input accepted by ParseConnectionString.
const MaxConnectionStringLen = 4096

// ParseConnectionString parses a connection string. HostName and
// SharedAccessKey are required; the key must be valid base64; keys of the
// string are matched case-insensitively; a duplicate key is an error.
func ParseConnectionString(s string) (*ConnectionString, error) {
	if len(s) > MaxConnectionStringLen {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrConnectionString, MaxConnectionStringLen)
	}
	cs := &ConnectionString{Extra: map[string]string{}}
	seen := map[string]bool{}
	for _, part := range strings.Split(strings.TrimSpace(s), ";") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: %q is not key=value", ErrConnectionString, truncate(part))
		}
		lk := strings.ToLower(strings.TrimSpace(k))
		if seen[lk] {
			return nil, fmt.Errorf("%w: duplicate %q", ErrConnectionString, k)
		}
		seen[lk] = true
		switch lk {
		case "hostname":
			cs.HostName = v
		case "sharedaccesskeyname":
			cs.SharedAccessKeyName = v
		case "sharedaccesskey":
			cs.SharedAccessKey = v
		case "deviceid":
			cs.DeviceID = v
		default:
			cs.Extra[k] = v
		}
	}
	if cs.HostName == "" {
		return nil, fmt.Errorf("%w: HostName is required", ErrConnectionString)
	}
	if cs.SharedAccessKey == "" {
		return nil, fmt.Errorf("%w: SharedAccessKey is required", ErrConnectionString)
	}
	if k, err := base64.StdEncoding.DecodeString(cs.SharedAccessKey); err != nil || len(k) == 0 {
		return nil, fmt.Errorf("%w: SharedAccessKey is not base64", ErrConnectionString)
	}
	return cs, nil
}

// String renders the connection string in canonical order.
func (c *ConnectionString) String() string {
	parts := []string{"HostName=" + c.HostName}
	if c.DeviceID != "" {
		parts = append(parts, "DeviceId="+c.DeviceID)
	}
	if c.SharedAccessKeyName != "" {
		parts = append(parts, "SharedAccessKeyName="+c.SharedAccessKeyName)
	}
	parts = append(parts, "SharedAccessKey="+c.SharedAccessKey)
	return strings.Join(parts, ";")
}
