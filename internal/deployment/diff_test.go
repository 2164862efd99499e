package deployment

import (
	"errors"
	"slices"
	"testing"

	"github.com/opendps/opendps/internal/armtemplate"
	"github.com/opendps/opendps/pkg/dpsclient"
)

const cs1 = "HostName=hub1.localhost:9;SharedAccessKeyName=iothubowner;SharedAccessKey=a2V5"

func ptr[T any](v T) *T { return &v }

func instanceRes(p *armtemplate.InstanceProps, tags map[string]string) *armtemplate.Resource {
	return &armtemplate.Resource{Path: "resources[0]", Type: armtemplate.TypeProvisioningService, Name: "dps1",
		Location: "westeurope", Tags: tags, Instance: p}
}

// current is dps1 as the control API shows it: hub key masked, defaults
// filled in, policy keys omitted.
func current() *dpsclient.ProvisioningService {
	apply := true
	return &dpsclient.ProvisioningService{Name: "dps1", Location: "westeurope", Tags: map[string]string{},
		Properties: dpsclient.ServiceProperties{AllocationPolicy: "Hashed",
			IotHubs: []dpsclient.IotHub{{Name: "HUB1.localhost:9", ConnectionString: "HostName=hub1.localhost:9;SharedAccessKeyName=iothubowner;SharedAccessKey=****",
				Location: "westeurope", AllocationWeight: 1, ApplyAllocationPolicy: &apply}},
			AuthorizationPolicies: []dpsclient.AccessPolicy{{KeyName: "provisioningserviceowner", Rights: "ServiceConfig, EnrollmentRead"}}}}
}

func TestInstanceDelta(t *testing.T) {
	hub := armtemplate.Hub{ConnectionString: cs1, HostName: "hub1.localhost:9", KeyName: "iothubowner"}
	for _, tc := range []struct {
		name  string
		props armtemplate.InstanceProps
		tags  map[string]string
		paths []string
	}{
		{"defaults equal what the service filled in", armtemplate.InstanceProps{IotHubs: []armtemplate.Hub{hub}, AllocationPolicy: "Hashed"}, map[string]string{}, nil},
		{"unset properties are not compared", armtemplate.InstanceProps{}, nil, nil},
		{"policies by name and rights, any order and case", armtemplate.InstanceProps{AuthorizationPolicies: []armtemplate.Policy{{KeyName: "ProvisioningServiceOwner", Rights: "EnrollmentRead, ServiceConfig"}}}, nil, nil},
		{"weight", armtemplate.InstanceProps{IotHubs: []armtemplate.Hub{{ConnectionString: cs1, HostName: "hub1.localhost:9", KeyName: "iothubowner", AllocationWeight: ptr(5)}}}, nil, []string{"properties.iotHubs[hub1.localhost:9].allocationWeight"}},
		{"hub key name", armtemplate.InstanceProps{IotHubs: []armtemplate.Hub{{HostName: "hub1.localhost:9", KeyName: "registryRead"}}}, nil, []string{"properties.iotHubs[hub1.localhost:9].keyName"}},
		{"no hubs", armtemplate.InstanceProps{IotHubs: []armtemplate.Hub{}}, nil, []string{"properties.iotHubs[hub1.localhost:9]"}},
		{"policy and tags", armtemplate.InstanceProps{AllocationPolicy: "Static"}, map[string]string{"a": "b"}, []string{"properties.allocationPolicy", "tags"}},
	} {
		d, err := instanceDelta(instanceRes(&tc.props, tc.tags), current())
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var paths []string
		for _, p := range d {
			paths = append(paths, p.Path)
		}
		if !slices.Equal(paths, tc.paths) {
			t.Errorf("%s: changes %v, want %v (%+v)", tc.name, paths, tc.paths, d)
		}
	}
}

func TestInstanceDeltaImmutable(t *testing.T) {
	r := instanceRes(&armtemplate.InstanceProps{EnableDataResidency: ptr(true)}, nil)
	_, err := instanceDelta(r, current())
	var es armtemplate.Errors
	if !errors.As(err, &es) || es[0].Path != "resources[0].properties.enableDataResidency" || !errors.Is(err, armtemplate.ErrRefused) {
		t.Errorf("residency flip: %v", err)
	}
	r = instanceRes(&armtemplate.InstanceProps{}, nil)
	r.Location = "northeurope"
	if _, err := instanceDelta(r, current()); !errors.As(err, &es) || es[0].Path != "resources[0].location" {
		t.Errorf("location change: %v", err)
	}
	if d, err := instanceDelta(instanceRes(&armtemplate.InstanceProps{IotHubs: []armtemplate.Hub{}}, nil), nil); err != nil || len(d) != 2 {
		t.Errorf("create: %+v %v, want location and hubs", d, err)
	}
}

// TestCertificateDelta: a certificate is compared by the thumbprint the
// control API shows and isVerified.
func TestCertificateDelta(t *testing.T) {
	r := &armtemplate.Resource{Path: "resources[1]", Type: armtemplate.TypeCertificate, Name: "dps1/ca",
		Certificate: &armtemplate.CertificateProps{Thumbprint: "AB12", IsVerified: true}}
	cur := &dpsclient.Certificate{Properties: dpsclient.CertificateProperties{Thumbprint: "AB12", IsVerified: true}}
	if d := certificateDelta(r, cur); d != nil {
		t.Errorf("same certificate: %+v, want no change", d)
	}
	cur.Properties.IsVerified = false
	if d := certificateDelta(r, cur); len(d) != 1 {
		t.Errorf("isVerified differs: %+v, want one change", d)
	}
	cur.Properties.IsVerified, cur.Properties.Thumbprint = true, "CD34"
	if d := certificateDelta(r, cur); len(d) != 1 || d[0].Before.(certView).Thumbprint != "CD34" || d[0].After.(certView).Thumbprint != "AB12" {
		t.Errorf("another certificate: %+v", d)
	}
	if d := certificateDelta(r, nil); len(d) != 1 || d[0].Before != nil {
		t.Errorf("new certificate: %+v", d)
	}
}
