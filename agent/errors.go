package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"orch.dev/orch/api"
	"orch.dev/orch/fsm"
)

// errOutcomeUnknown means a write was proposed but leadership was lost
// before it was known to commit; it may or may not have been applied.
var errOutcomeUnknown = errors.New("leadership was lost while the write was being committed; it may or may not have been applied")

func groupResource(k *api.Kind) schema.GroupResource {
	return schema.GroupResource{Group: k.Group, Resource: k.Resource}
}

// toStatus maps any error to the Kubernetes Status the API returns. This is
// the one place where errors become HTTP codes.
func toStatus(err error) *apierrors.StatusError {
	var se *apierrors.StatusError
	if errors.As(err, &se) {
		return se
	}
	var oe *fsm.ObjectError
	if errors.As(err, &oe) {
		gr := groupResource(oe.Kind)
		switch {
		case errors.Is(err, fsm.ErrNotFound):
			return apierrors.NewNotFound(gr, oe.Name)
		case errors.Is(err, fsm.ErrAlreadyExists):
			return apierrors.NewAlreadyExists(gr, oe.Name)
		case errors.Is(err, fsm.ErrConflict):
			s := apierrors.NewConflict(gr, oe.Name, errors.New("the object has been modified; please apply your changes to the latest version and try again"))
			s.ErrStatus.Message = oe.Msg
			return s
		case errors.Is(err, fsm.ErrDoesNotFit):
			s := apierrors.NewConflict(gr, oe.Name, errors.New(oe.Msg))
			s.ErrStatus.Message = oe.Msg
			return s
		case errors.Is(err, fsm.ErrDisruption):
			s := apierrors.NewTooManyRequests(oe.Msg, 0)
			s.ErrStatus.Details = &metav1.StatusDetails{Name: oe.Name, Kind: gr.Resource,
				Causes: []metav1.StatusCause{{Type: "DisruptionBudget", Message: oe.Msg}}}
			return s
		case errors.Is(err, fsm.ErrInvalid) && oe.Field != nil:
			return apierrors.NewInvalid(oe.Kind.GroupVersion().WithKind(oe.Kind.Kind).GroupKind(), oe.Name,
				field.ErrorList{field.Invalid(field.NewPath(oe.Field.Path), oe.Field.Value, oe.Msg)})
		case errors.Is(err, fsm.ErrForbidden):
			s := apierrors.NewForbidden(gr, oe.Name, errors.New(oe.Msg))
			s.ErrStatus.Message = oe.Msg
			return s
		}
	}
	switch {
	case errors.Is(err, fsm.ErrGone):
		return apierrors.NewResourceExpired(err.Error())
	case errors.Is(err, errNoLeader), errors.Is(err, raft.ErrNotLeader),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown),
		errors.Is(err, errShuttingDown):
		s := apierrors.NewServiceUnavailable(fmt.Sprintf("%v; retry", err))
		s.ErrStatus.Details = &metav1.StatusDetails{RetryAfterSeconds: 1}
		return s
	case errors.Is(err, errOutcomeUnknown), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrEnqueueTimeout):
		return apierrors.NewTimeoutError(err.Error(), 1)
	case errors.Is(err, context.DeadlineExceeded):
		return apierrors.NewTimeoutError(err.Error(), 1)
	case errors.Is(err, context.Canceled):
		return apierrors.NewTimeoutError("request cancelled", 0)
	}
	return apierrors.NewInternalError(err)
}

func invalid(k *api.Kind, name string, errs field.ErrorList) *apierrors.StatusError {
	return apierrors.NewInvalid(k.GroupVersion().WithKind(k.Kind).GroupKind(), name, errs)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","message":"encoding response failed","code":500}`)
	}
	writeRaw(w, code, b)
}

func writeRaw(w http.ResponseWriter, code int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b)
	w.Write([]byte("\n"))
}

// writeError writes err as a Kubernetes Status.
func writeError(w http.ResponseWriter, err error) {
	st := toStatus(err).ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	if st.Code == 0 {
		st.Code = http.StatusInternalServerError
	}
	if st.Details != nil && st.Details.RetryAfterSeconds > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(st.Details.RetryAfterSeconds))
	}
	writeJSON(w, int(st.Code), st)
}
