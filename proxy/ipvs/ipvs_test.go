package ipvs

import (
	"context"
	"errors"
	"testing"

	"orch.dev/orch/proxy"
)

// TestInitRefusesWithoutIPVS: on a kernel without IPVS the backend says so
// instead of handing moby/ipvs a kernel it silently misbehaves on. (The
// real-kernel tests are TestIPVS in proxy/conformance, run by make
// ipvs-test.)
func TestInitRefusesWithoutIPVS(t *testing.T) {
	if Available() {
		t.Skip("this kernel has IPVS")
	}
	err := New(Config{}).Init(context.Background())
	if !errors.Is(err, proxy.ErrNoIPVS) {
		t.Fatalf("Init without IPVS: %v, want ErrNoIPVS", err)
	}
	if m, err := proxy.SelectMode(proxy.ModeAuto, Available); err != nil || m != proxy.ModeNFTables {
		t.Fatalf("auto without IPVS chose %q (%v)", m, err)
	}
}
