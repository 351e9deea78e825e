package proxy

import (
	"errors"
	"fmt"
)

// Mode is the --proxy-mode flag's value.
type Mode string

const (
	ModeAuto     Mode = "auto"
	ModeIPVS     Mode = "ipvs"
	ModeNFTables Mode = "nftables"
)

// ErrNoIPVS: IPVS was asked for and the kernel does not have it.
var ErrNoIPVS = errors.New("proxy: the kernel has no IPVS")

// ParseMode parses a --proxy-mode value ("" means auto).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "":
		return ModeAuto, nil
	case ModeAuto, ModeIPVS, ModeNFTables:
		return m, nil
	}
	return "", fmt.Errorf("proxy mode %q: want auto, ipvs or nftables", s)
}

// SelectMode resolves auto: IPVS when the kernel has it (ipvsAvailable, e.g.
// proxy/ipvs.Available), nftables otherwise. Asking for ipvs on a kernel
// without it is an error rather than a silent fallback.
func SelectMode(m Mode, ipvsAvailable func() bool) (Mode, error) {
	switch m {
	case ModeNFTables:
		return m, nil
	case ModeIPVS:
		if !ipvsAvailable() {
			return "", ErrNoIPVS
		}
		return m, nil
	case ModeAuto, "":
		if ipvsAvailable() {
			return ModeIPVS, nil
		}
		return ModeNFTables, nil
	}
	return "", fmt.Errorf("proxy mode %q: want auto, ipvs or nftables", m)
}
