package instance

import (
	"context"
	"strings"
	"testing"

	"github.com/opendps/opendps/internal/model"
)

func TestHubs(t *testing.T) {
	ctx := context.Background()
	m, fc := newManager(t, "")
	v := mustCreate(t, m, Spec{Name: "hubs", Location: "westeurope"})
	etag := v.Instance.Etag
	cs1 := hubCS("Hub1.localhost:8443")

	h, created, err := m.AddHub(ctx, "hubs", HubSpec{ConnectionString: cs1})
	if err != nil || !created {
		t.Fatalf("AddHub = %v, %v", created, err)
	}
	want := model.LinkedHub{Name: "Hub1.localhost:8443", ConnectionString: cs1, Location: "westeurope", AllocationWeight: 1, ApplyAllocationPolicy: true}
	if h != want {
		t.Errorf("hub = %+v, want %+v", h, want)
	}
	if fc.count() != 1 {
		t.Errorf("checker calls = %d, want 1", fc.count())
	}
	v, _ = m.Get(ctx, "hubs")
	if v.Instance.Etag == etag || len(v.Hubs) != 1 {
		t.Errorf("after AddHub: etag %q hubs %+v", v.Instance.Etag, v.Hubs)
	}
	// Same connection string, new weight: no new check.
	h, created, err = m.AddHub(ctx, "hubs", HubSpec{ConnectionString: cs1, AllocationWeight: ptr(1000), ApplyAllocationPolicy: ptr(false), Location: "North Europe"})
	if err != nil || created || h.AllocationWeight != 1000 || h.ApplyAllocationPolicy || h.Location != "northeurope" || fc.count() != 1 {
		t.Errorf("update hub = %+v, %v, %v (checks %d)", h, created, err, fc.count())
	}

	refused := []struct {
		name string
		spec HubSpec
		kind error
		msg  string
	}{
		{"weight 0", HubSpec{ConnectionString: hubCS("h2.localhost"), AllocationWeight: ptr(0)}, ErrInvalid, "1 to 1000"},
		{"weight 1001", HubSpec{ConnectionString: hubCS("h2.localhost"), AllocationWeight: ptr(1001)}, ErrInvalid, "1 to 1000"},
		{"garbage", HubSpec{ConnectionString: "garbage"}, ErrInvalid, "connection string"},
		{"no key", HubSpec{ConnectionString: "HostName=h2.localhost;SharedAccessKeyName=x"}, ErrInvalid, "no key"},
		{"bad key", HubSpec{ConnectionString: "HostName=h2.localhost;SharedAccessKey=%%%"}, ErrInvalid, "base64"},
		{"host", HubSpec{ConnectionString: "HostName=a/b;SharedAccessKey=" + NewKey()}, ErrInvalid, "not a host name"},
		{"port", HubSpec{ConnectionString: "HostName=h2.localhost:99999;SharedAccessKey=" + NewKey()}, ErrInvalid, "not a host name"},
		{"device", HubSpec{ConnectionString: hubCS("h2.localhost") + ";DeviceId=d"}, ErrInvalid, "device connection string"},
		{"location", HubSpec{ConnectionString: hubCS("h2.localhost"), Location: "atlantis"}, ErrInvalid, "not a region"},
		{"checker", HubSpec{ConnectionString: hubCS("bad.localhost")}, ErrHubCheck, "hub: unauthorized"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := m.AddHub(ctx, "hubs", tt.spec)
			wantKind(t, err, tt.kind)
			if !strings.Contains(Message(err), tt.msg) {
				t.Errorf("message %q does not contain %q", Message(err), tt.msg)
			}
		})
	}
	hubs, _ := m.Hubs(ctx, "hubs")
	if len(hubs) != 1 {
		t.Errorf("refused hubs were linked: %+v", hubs)
	}
	wantKind(t, m.RemoveHub(ctx, "hubs", "nope.localhost"), ErrNotFound)
	if err := m.RemoveHub(ctx, "hubs", "hub1.LOCALHOST:8443"); err != nil {
		t.Fatal(err)
	}
	if hubs, _ := m.Hubs(ctx, "hubs"); len(hubs) != 0 {
		t.Errorf("hubs after remove: %+v", hubs)
	}
}

func TestHubsThroughPut(t *testing.T) {
	ctx := context.Background()
	m, fc := newManager(t, "")
	cs1, cs2 := hubCS("put1.localhost"), hubCS("put2.localhost")
	v := mustCreate(t, m, Spec{Name: "hubs-put", Location: "westeurope", Hubs: []HubSpec{{ConnectionString: cs1}, {ConnectionString: cs2, AllocationWeight: ptr(5)}}})
	if len(v.Hubs) != 2 || fc.count() != 2 {
		t.Fatalf("hubs %+v checks %d", v.Hubs, fc.count())
	}
	etag := v.Instance.Etag
	// A GET/PUT round trip sends masked keys: nothing changes, nothing is checked.
	masked := []HubSpec{{ConnectionString: MaskConnectionString(cs1)}, {ConnectionString: MaskConnectionString(cs2), AllocationWeight: ptr(5)}}
	if !strings.HasSuffix(masked[0].ConnectionString, "SharedAccessKey=****") {
		t.Fatalf("masked = %q", masked[0].ConnectionString)
	}
	v, _, err := m.Put(ctx, Spec{Name: "hubs-put", Hubs: masked})
	if err != nil || v.Instance.Etag != etag || fc.count() != 2 || v.Hubs[0].ConnectionString != cs1 {
		t.Fatalf("masked re-PUT: %v etag %q->%q checks %d hubs %+v", err, etag, v.Instance.Etag, fc.count(), v.Hubs)
	}
	// Nil keeps, empty removes all.
	if v, _, err = m.Put(ctx, Spec{Name: "hubs-put"}); err != nil || len(v.Hubs) != 2 {
		t.Fatalf("nil hubs: %v %d", err, len(v.Hubs))
	}
	if v, _, err = m.Put(ctx, Spec{Name: "hubs-put", Hubs: masked[:1]}); err != nil || len(v.Hubs) != 1 || v.Instance.Etag == etag {
		t.Fatalf("one hub: %v %+v", err, v.Hubs)
	}
	if v, _, err = m.Put(ctx, Spec{Name: "hubs-put", Hubs: []HubSpec{}}); err != nil || len(v.Hubs) != 0 {
		t.Fatalf("no hubs: %v %+v", err, v.Hubs)
	}
	_, _, err = m.Put(ctx, Spec{Name: "hubs-put", Hubs: []HubSpec{{ConnectionString: MaskConnectionString(cs1)}}})
	wantKind(t, err, ErrInvalid) // masked key of a hub that is not linked
	_, _, err = m.Put(ctx, Spec{Name: "hubs-put", Hubs: []HubSpec{{ConnectionString: cs1}, {ConnectionString: cs1}}})
	wantKind(t, err, ErrInvalid)
}
