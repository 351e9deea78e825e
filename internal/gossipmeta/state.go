package gossipmeta

import "encoding/json"

// State is what servers add to memberlist's push-pull exchanges: the
// sealed cluster CA (pki.SealedCA as JSON), whose key only holders of the
// cluster secret can open. Gossip carries nothing of the cluster's objects.
type State struct {
	V        int             `json:"v"`
	SealedCA json.RawMessage `json:"sealedCA,omitempty"`
}

// StateV1 is the only State version.
const StateV1 = 1
