package model

import "time"

// Rights of shared access policies (spec §6.2).
const (
	RightServiceConfig           = "ServiceConfig"
	RightEnrollmentRead          = "EnrollmentRead"
	RightEnrollmentWrite         = "EnrollmentWrite"
	RightRegistrationStatusRead  = "RegistrationStatusRead"
	RightRegistrationStatusWrite = "RegistrationStatusWrite"
	RightDeviceConnect           = "DeviceConnect"

	// OwnerPolicy is the policy every new instance gets, with all rights.
	OwnerPolicy = "provisioningserviceowner"
)

// AllRights lists every right in canonical order.
var AllRights = []string{RightServiceConfig, RightEnrollmentRead, RightEnrollmentWrite, RightRegistrationStatusRead, RightRegistrationStatusWrite}

// Instance roles in a region.
const (
	RolePrimary   = "primary"
	RoleSecondary = "secondary"
)

// ARM-style instance allocation policies (Pascal case on the control plane).
const (
	InstanceAllocationHashed     = "Hashed"
	InstanceAllocationGeoLatency = "GeoLatency"
	InstanceAllocationStatic     = "Static"
)

// AccessPolicy is a shared access policy of an instance.
type AccessPolicy struct {
	KeyName      string `json:"keyName"`
	PrimaryKey   string `json:"primaryKey,omitempty"`
	SecondaryKey string `json:"secondaryKey,omitempty"`
	Rights       string `json:"rights"` // comma+space separated, as ARM shows it
}

// LinkedHub is an IoT hub the instance may assign devices to.
type LinkedHub struct {
	Name                  string `json:"name"` // host name, as in the connection string
	ConnectionString      string `json:"connectionString,omitempty"`
	Location              string `json:"location"`
	AllocationWeight      int    `json:"allocationWeight"`
	ApplyAllocationPolicy bool   `json:"applyAllocationPolicy"`
}

// Instance is a tenant's DPS instance (stored at /opendps/i/{name}/conf).
type Instance struct {
	Name                  string            `json:"name"`
	IDScope               string            `json:"idScope"`
	Location              string            `json:"location"`
	SecondaryLocation     string            `json:"secondaryLocation,omitempty"`
	EnableDataResidency   bool              `json:"enableDataResidency"`
	AllocationPolicy      string            `json:"allocationPolicy"`
	AuthorizationPolicies []AccessPolicy    `json:"authorizationPolicies"`
	State                 string            `json:"state"`
	SubscriptionID        string            `json:"subscriptionId,omitempty"`
	ResourceGroup         string            `json:"resourceGroup,omitempty"`
	Tags                  map[string]string `json:"tags,omitempty"`
	Etag                  string            `json:"etag"`
	Created               time.Time         `json:"created"`
	Updated               time.Time         `json:"updated"`
}

// Policy returns the named policy (case-insensitive) or nil.
func (in *Instance) Policy(name string) *AccessPolicy {
	for i := range in.AuthorizationPolicies {
		if equalFold(in.AuthorizationPolicies[i].KeyName, name) {
			return &in.AuthorizationPolicies[i]
		}
	}
	return nil
}

// DirEntry is an instance's directory entry (/opendps/dir/{name}): what
// every write to the instance is fenced on.
type DirEntry struct {
	Name      string `json:"name"`
	IDScope   string `json:"idScope"`
	Primary   string `json:"primary"`
	Secondary string `json:"secondary,omitempty"`
	Epoch     uint64 `json:"epoch"`
	DREnabled bool   `json:"drEnabled"`
	Role      string `json:"role"`
	// FailedOverAt is when the current epoch began by a failover (zero
	// for epoch 1): the failover cool-down counts from it.
	FailedOverAt time.Time `json:"failedOverAt,omitzero"`
}

// Certificate is a CA certificate of an instance (§8.4).
type Certificate struct {
	Name             string    `json:"name"`
	Certificate      string    `json:"certificate"` // base64 DER
	Subject          string    `json:"subject"`
	Thumbprint       string    `json:"thumbprint"`
	Expiry           time.Time `json:"expiry"`
	IsVerified       bool      `json:"isVerified"`
	VerificationCode string    `json:"verificationCode,omitempty"`
	Etag             string    `json:"etag"`
	Created          time.Time `json:"created"`
	Updated          time.Time `json:"updated"`
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}
