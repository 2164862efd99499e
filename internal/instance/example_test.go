package instance_test

import (
	"context"
	"fmt"
	"log"

	"github.com/opendps/opendps/internal/instance"
	"github.com/opendps/opendps/internal/regions"
	"github.com/opendps/opendps/internal/store"
)

// Example creates an instance with disaster recovery, links a hub and adds
// a read-only policy.
func Example() {
	ctx := context.Background()
	st, err := store.Open(ctx, store.Config{DataDir: "/tmp/opendps-example", Region: "westeurope",
		ClientURL: "http://127.0.0.1:23790", PeerURL: "http://127.0.0.1:23800"})
	if err != nil {
		log.Fatal(err)
	}
	defer st.Close()
	m, err := instance.New(instance.Config{Store: st, Catalog: regions.Builtin(), Region: "westeurope",
		ServiceDomain: "localhost:8443", DeviceHost: "localhost:8443"})
	if err != nil {
		log.Fatal(err)
	}
	v, err := m.Create(ctx, instance.Spec{Name: "dps1", Location: "westeurope"})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Instance.IDScope, v.Dir.Secondary, v.ServiceHostName) // 0ne… northeurope dps1.localhost:8443
	if _, _, err := m.AddHub(ctx, "dps1", instance.HubSpec{ConnectionString: "HostName=hub1.localhost:8443;SharedAccessKeyName=iothubowner;SharedAccessKey=..."}); err != nil {
		log.Fatal(err) // the hub must answer and accept the key
	}
	if _, _, err := m.SetPolicy(ctx, "dps1", "reader", "EnrollmentRead, RegistrationStatusRead", true); err != nil {
		log.Fatal(err)
	}
}
