package agent

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// stampNew sets the identity and creation time of a new object. These are
// chosen here, before the entry is proposed, so that FSM.Apply stays
// deterministic.
func stampNew(obj api.Object, now time.Time) {
	obj.SetUID(uuid.NewUUID())
	obj.SetCreationTimestamp(metav1.NewTime(now.UTC().Truncate(time.Second)))
	obj.SetResourceVersion("")
	obj.SetGeneration(0)
	obj.SetDeletionTimestamp(nil)
	obj.SetDeletionGracePeriodSeconds(nil)
}

// propose commits cmd through Raft, batched with other concurrent writes;
// this server must be the leader.
func (a *Agent) propose(ctx context.Context, cmd fsm.Command) (*fsm.Result, error) {
	if err := a.proposalRefusal(cmd); err != nil {
		return nil, err
	}
	return a.proposer.propose(ctx, cmd)
}

// proposeObject encodes obj into a Create or Update command and proposes it.
func (a *Agent) proposeObject(ctx context.Context, cmd fsm.Command, obj api.Object) (*fsm.Result, error) {
	_, update := cmd.(*fsm.Update)
	obj = a.sealForProposal(obj, update) // Secrets reach Raft encrypted (secrets_crypt.go)
	b, err := obj.Marshal()
	if err != nil {
		return nil, err
	}
	if len(b) > api.MaxObjectBytes {
		return nil, apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("%s %q is %d bytes encoded; the limit is %d bytes", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), len(b), api.MaxObjectBytes))
	}
	switch c := cmd.(type) {
	case *fsm.Create:
		c.Object = b
	case *fsm.Update:
		c.Object = b
	default:
		return nil, fmt.Errorf("proposeObject: %T carries no object", cmd)
	}
	return a.propose(ctx, cmd)
}
