package workercmd

import "testing"

func TestGCPercentYieldsToGOGC(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == "GOGC" {
				return v
			}
			return ""
		}
	}
	if got := gcPercent(env("")); got != defaultGCPercent {
		t.Errorf("without GOGC: %d, want %d", got, defaultGCPercent)
	}
	for _, v := range []string{"200", "off"} {
		if got := gcPercent(env(v)); got != 0 {
			t.Errorf("GOGC=%s: %d, want 0 (the environment decides)", v, got)
		}
	}
}
