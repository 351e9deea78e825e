package kubelet

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"orch.dev/orch/node/runtime"
)

// computeStatus builds the pod's status from what the worker knows. It
// starts from the status the API holds, so fields other writers own (the
// scheduler's PodScheduled, qosClass) survive, and replaces what the
// kubelet owns. Timestamps have the API's precision (seconds), so an
// unchanged pod computes an identical status.
func (w *podWorker) computeStatus(pod *corev1.Pod, terminating bool) corev1.PodStatus {
	st := *pod.Status.DeepCopy()
	if w.lastStatus != nil {
		st.Conditions = w.lastStatus.Conditions
	}
	st.HostIP, st.HostIPs = w.k.cfg.NodeIP, nil
	if st.HostIP != "" {
		st.HostIPs = []corev1.HostIP{{IP: st.HostIP}}
	}
	st.PodIP, st.PodIPs = "", nil
	if w.sandbox != nil && w.sandbox.IP != "" {
		st.PodIP, st.PodIPs = w.sandbox.IP, []corev1.PodIP{{IP: w.sandbox.IP}}
	}
	st.StartTime = w.startTime
	st.Reason, st.Message = w.reason, w.message
	if st.Reason == "" && w.sandboxErr != nil {
		st.Message = "creating the pod sandbox: " + w.sandboxErr.Error()
	}

	st.InitContainerStatuses = nil
	initialized, initFailed := true, false
	var incomplete []string
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		cs := w.containerStatus(c, true, initialized)
		st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
		if t := cs.State.Terminated; t != nil && t.ExitCode == 0 {
			continue
		}
		if initialized && pod.Spec.RestartPolicy == corev1.RestartPolicyNever && failed(cs) {
			initFailed = true
		}
		initialized = false
		incomplete = append(incomplete, c.Name)
	}
	st.ContainerStatuses = nil
	var unready []string
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		cs := w.containerStatus(c, false, initialized)
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
		if !cs.Ready {
			unready = append(unready, c.Name)
		}
	}

	st.Phase = podPhase(pod, st.ContainerStatuses, initialized, initFailed)
	switch {
	case w.terminal != "":
		st.Phase = w.terminal
	case terminating && st.Phase != corev1.PodSucceeded && st.Phase != corev1.PodFailed:
		// Every container has stopped: the pod ends as its containers did.
		st.Phase = corev1.PodSucceeded
		for _, cs := range st.ContainerStatuses {
			if t := cs.State.Terminated; t == nil || t.ExitCode != 0 {
				st.Phase = corev1.PodFailed
			}
		}
	}
	done := st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed
	if done {
		for i := range st.ContainerStatuses {
			st.ContainerStatuses[i].Ready = false
		}
	}

	w.setCondition(&st, corev1.PodScheduled, true, "", "")
	if initialized {
		w.setCondition(&st, corev1.PodInitialized, true, "", "")
	} else {
		w.setCondition(&st, corev1.PodInitialized, false, "ContainersNotInitialized",
			fmt.Sprintf("containers with incomplete status: [%s]", strings.Join(incomplete, " ")))
	}
	ready, reason, msg := len(unready) == 0 && !done, "", ""
	switch {
	case done:
		reason = "PodCompleted"
	case !ready:
		reason, msg = "ContainersNotReady", fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	}
	w.setCondition(&st, corev1.ContainersReady, ready, reason, msg)
	w.setCondition(&st, corev1.PodReady, ready, reason, msg)
	return st
}

func failed(cs corev1.ContainerStatus) bool {
	if t := cs.State.Terminated; t != nil {
		return t.ExitCode != 0
	}
	return false
}

// setCondition sets a condition, keeping its transition time when its
// status did not change.
func (w *podWorker) setCondition(st *corev1.PodStatus, t corev1.PodConditionType, ok bool, reason, msg string) {
	status := corev1.ConditionFalse
	if ok {
		status = corev1.ConditionTrue
	}
	c := corev1.PodCondition{Type: t, Status: status, Reason: reason, Message: msg}
	for i := range st.Conditions {
		old := st.Conditions[i]
		if old.Type != t {
			continue
		}
		if t == corev1.PodScheduled && old.Status == corev1.ConditionTrue {
			return // the scheduler's
		}
		c.LastTransitionTime = old.LastTransitionTime
		if old.Status != status || c.LastTransitionTime.IsZero() {
			c.LastTransitionTime = now()
		}
		c.LastProbeTime = old.LastProbeTime
		st.Conditions = append(st.Conditions[:i:i], append([]corev1.PodCondition{c}, st.Conditions[i+1:]...)...)
		return
	}
	c.LastTransitionTime = now()
	st.Conditions = append(append([]corev1.PodCondition(nil), st.Conditions...), c)
	sort.SliceStable(st.Conditions, func(i, j int) bool { return condOrder[st.Conditions[i].Type] < condOrder[st.Conditions[j].Type] })
}

var condOrder = map[corev1.PodConditionType]int{corev1.PodInitialized: 1, corev1.PodReady: 2, corev1.ContainersReady: 3, corev1.PodScheduled: 4}

// containerStatus reports one container. canStart is false for app
// containers while init containers are incomplete.
func (w *podWorker) containerStatus(c *corev1.Container, isInit, canStart bool) corev1.ContainerStatus {
	out := corev1.ContainerStatus{Name: c.Name, Image: c.Image}
	cs := w.ctrs[c.Name]
	if cs == nil || cs.cur == nil {
		reason := ReasonContainerCreating
		if !canStart && !isInit {
			reason = ReasonPodInitializing
		}
		out.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
		if cs != nil && cs.waiting != nil {
			out.State.Waiting = cs.waiting.DeepCopy()
		}
		if cs != nil && cs.prev != nil {
			out.RestartCount = int32(cs.prev.Attempt + 1)
			out.LastTerminationState = stateOf(cs.prev)
		}
		started := false
		out.Started = &started
		return out
	}
	cur := cs.cur
	out.ContainerID = "containerd://" + cur.ID
	out.ImageID = cur.ImageID
	if cur.Image != "" {
		out.Image = cur.Image
	}
	out.RestartCount = int32(cur.Attempt)
	state := stateOf(cur)
	if cs.waiting != nil && cur.State != runtime.StateRunning {
		out.State = corev1.ContainerState{Waiting: cs.waiting.DeepCopy()}
		if state.Terminated != nil {
			out.LastTerminationState = state
		}
	} else {
		out.State = state
		if cs.prev != nil {
			out.LastTerminationState = stateOf(cs.prev)
		}
	}
	started, ready := false, false
	if cur.State == runtime.StateRunning {
		started, ready = w.probeView(c.Name, cur.ID)
	}
	if isInit {
		started = cur.State == runtime.StateRunning
		ready = cur.State == runtime.StateExited && cur.ExitCode == 0
	}
	out.Started, out.Ready = &started, ready
	return out
}

// stateOf translates a runtime state.
func stateOf(st *runtime.ContainerStatus) corev1.ContainerState {
	switch st.State {
	case runtime.StateRunning:
		return corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: apiTime(st.StartedAt)}}
	case runtime.StateExited:
		return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: int32(st.ExitCode), Reason: st.Reason, Message: st.Message,
			StartedAt: apiTime(st.StartedAt), FinishedAt: apiTime(st.FinishedAt), ContainerID: "containerd://" + st.ID}}
	case runtime.StateCreated:
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: ReasonContainerCreating}}
	}
	return corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: runtime.ExitCodeStopped, Reason: ReasonContainerStatusLost,
		Message:   "The container's process was lost (the runtime or the machine restarted)",
		StartedAt: apiTime(st.StartedAt), FinishedAt: apiTime(st.FinishedAt), ContainerID: "containerd://" + st.ID}}
}

func apiTime(t time.Time) metav1.Time {
	if t.IsZero() {
		return metav1.Time{}
	}
	return metav1.NewTime(t.Truncate(time.Second))
}

// podPhase is Kubernetes' phase rule over the container statuses.
func podPhase(pod *corev1.Pod, statuses []corev1.ContainerStatus, initialized, initFailed bool) corev1.PodPhase {
	if initFailed {
		return corev1.PodFailed
	}
	if !initialized {
		return corev1.PodPending
	}
	var running, waiting, stopped, succeeded int
	for _, cs := range statuses {
		switch {
		case cs.State.Running != nil:
			running++
		case cs.State.Terminated != nil:
			stopped++
			if cs.State.Terminated.ExitCode == 0 {
				succeeded++
			}
		case cs.State.Waiting != nil && cs.LastTerminationState.Terminated != nil:
			stopped++
		default:
			waiting++
		}
	}
	switch {
	case waiting > 0:
		return corev1.PodPending
	case running > 0:
		return corev1.PodRunning
	case stopped > 0:
		switch {
		case pod.Spec.RestartPolicy == corev1.RestartPolicyAlways:
			return corev1.PodRunning
		case stopped == succeeded:
			return corev1.PodSucceeded
		case pod.Spec.RestartPolicy == corev1.RestartPolicyNever:
			return corev1.PodFailed
		}
		return corev1.PodRunning
	}
	return corev1.PodPending
}
