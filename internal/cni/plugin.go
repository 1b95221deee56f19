// Package cni is weft-cni: a chained CNI plugin that writes a meshed pod's traffic
// redirection rules into its network namespace when the pod's sandbox is created, so
// that meshed pods need no NET_ADMIN init container (docs/cni.md), and the installer
// that the weft-cni DaemonSet runs on every node to put the plugin in place.
//
// The rules are weft-init's: the plugin reads weft-init's flags from the pod's validator
// container, parses them with iptables.ParseRuleArgs and applies them with
// iptables.Runner. There is no second rule writer.
package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/meshdefaults"
)

// PluginType is the plugin's "type" in a conflist, and its binary's name.
const PluginType = "weft-cni"

// SupportedVersions are the CNI spec versions the plugin speaks. 0.4.0 is the oldest with
// prevResult and CHECK for chained plugins; the local cluster's conflist uses it.
var SupportedVersions = version.PluginSupports("0.4.0", "1.0.0", "1.1.0")

// NetConf is the plugin's entry in the conflist, as the installer writes it.
type NetConf struct {
	types.PluginConf
	// Kubeconfig is the host path of the kubeconfig the plugin reads pods with. The
	// installer writes it with the weft-cni ServiceAccount's token (get pods, nothing
	// else) and refreshes it when the token rotates.
	Kubeconfig string `json:"kubeconfig"`
	// ExcludeNamespaces are never looked up: their pods pass through without an API
	// call, so the cluster's own pods (CoreDNS, the CNI itself) start even when the API
	// server is unreachable. Nothing in them is ever meshed.
	ExcludeNamespaces []string `json:"excludeNamespaces,omitempty"`
	// IPTables and IP6Tables name the binaries to run in the pod's namespace; iptables
	// and ip6tables (looked up in the runtime's PATH) when empty.
	IPTables  string `json:"iptables,omitempty"`
	IP6Tables string `json:"ip6tables,omitempty"`

	// rawPrevResult is prevResult exactly as the previous plugin wrote it.
	rawPrevResult json.RawMessage
}

// k8sArgs are the CNI_ARGS the container runtimes (containerd, CRI-O) pass for a pod.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE types.UnmarshallableString //nolint:revive // the CNI_ARGS key
	K8S_POD_NAME      types.UnmarshallableString //nolint:revive // the CNI_ARGS key
	K8S_POD_UID       types.UnmarshallableString //nolint:revive // the CNI_ARGS key
}

// PodGetter reads one pod from the API server.
type PodGetter interface {
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
}

// Plugin runs the CNI commands. Its fields are what the tests replace; main uses
// NewPodGetter and the real network namespaces.
type Plugin struct {
	// Pods builds the pod reader from the plugin's configuration.
	Pods func(conf *NetConf) (PodGetter, error)
	// Log receives progress; the runtime shows the plugin's stderr only on failure, and
	// stdout carries only the result.
	Log logr.Logger
	// Timeout bounds one command. Default: 30s, well inside the kubelet's 4-minute
	// sandbox creation deadline, so a slow API server fails the sandbox with this
	// plugin's message rather than the kubelet's.
	Timeout time.Duration
}

func (p Plugin) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return 30 * time.Second
}

// ParseConf reads the plugin's configuration and checks its prevResult, keeping the
// prevResult's bytes as they came.
func ParseConf(stdin []byte) (*NetConf, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("parse the weft-cni configuration: %w", err)
	}
	var raw struct {
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(stdin, &raw); err != nil {
		return nil, fmt.Errorf("parse the weft-cni configuration: %w", err)
	}
	conf.rawPrevResult = raw.PrevResult
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return nil, err
	}
	return conf, nil
}

// target is what the plugin decided about one pod.
type target struct {
	// rules is nil for a pod the plugin leaves alone.
	rules *iptables.Config
	pod   string
}

// Add writes the pod's rules when it is meshed in CNI mode, and always returns the
// previous plugin's result, unchanged: weft-cni creates no interface and no address.
func (p Plugin) Add(args *skel.CmdArgs, out io.Writer) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return fmt.Errorf("weft-cni got no prevResult: it must be chained after the plugin that creates the pod's interface " +
			"(add it at the end of the conflist's plugins, as the weft-cni installer does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
	defer cancel()
	tg, err := p.resolve(ctx, conf, args.Args)
	if err != nil {
		return err
	}
	if tg.rules != nil {
		r := iptables.Runner{IPv4Binary: conf.IPTables, IPv6Binary: conf.IP6Tables, Out: logWriter{p.Log.V(1)}, Log: p.Log}
		err := InNetNS(args.Netns, func() error { return r.Apply(ctx, *tg.rules) })
		if err != nil {
			return fmt.Errorf("weft-cni: set up traffic redirection of meshed pod %s: %w", tg.pod, err)
		}
		p.Log.Info("Traffic redirection in place", "pod", tg.pod, "netns", args.Netns)
	}
	return printResult(conf, out)
}

// Check verifies, for a meshed pod, that its rules are still in place, and passes
// otherwise.
func (p Plugin) Check(args *skel.CmdArgs) error {
	conf, err := ParseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return errors.New("weft-cni got no prevResult on CHECK")
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout())
	defer cancel()
	tg, err := p.resolve(ctx, conf, args.Args)
	if err != nil || tg.rules == nil {
		return err
	}
	r := iptables.Runner{IPv4Binary: conf.IPTables, IPv6Binary: conf.IP6Tables}
	return InNetNS(args.Netns, func() error {
		for _, f := range tg.rules.Families() {
			bin := r.Binary(f)
			text, err := iptables.Save(ctx, bin)
			if err != nil {
				return err
			}
			st, err := iptables.ParseSave(text)
			if err != nil {
				return err
			}
			if missing := iptables.Missing(iptables.Render(*tg.rules, f), st); len(missing) > 0 {
				return fmt.Errorf("weft-cni: meshed pod %s lacks its %s redirection: %v", tg.pod, f, missing)
			}
		}
		return nil
	})
}

// Del has nothing to undo: the rules live in the pod's network namespace and go away
// with it. The runtime may call DEL many times, or for a pod that never got ADD, so it
// must succeed without looking anything up.
func (p Plugin) Del(*skel.CmdArgs) error { return nil }

// resolve decides whether the pod gets rules, and which.
func (p Plugin) resolve(ctx context.Context, conf *NetConf, cniArgs string) (target, error) {
	var ka k8sArgs
	ka.IgnoreUnknown = true
	if err := types.LoadArgs(cniArgs, &ka); err != nil {
		return target{}, fmt.Errorf("weft-cni: parse CNI_ARGS: %w", err)
	}
	ns, name := string(ka.K8S_POD_NAMESPACE), string(ka.K8S_POD_NAME)
	if ns == "" || name == "" {
		// Not a Kubernetes pod (a runtime used on its own): nothing of Weft's.
		p.Log.V(1).Info("No Kubernetes pod in CNI_ARGS, passing through")
		return target{}, nil
	}
	key := ns + "/" + name
	if slices.Contains(conf.ExcludeNamespaces, ns) {
		return target{pod: key}, nil
	}
	if p.Pods == nil {
		return target{}, errors.New("weft-cni: no pod reader configured")
	}
	getter, err := p.Pods(conf)
	if err != nil {
		return target{}, fmt.Errorf("weft-cni: cannot read pod %s to see whether it is meshed: %w", key, err)
	}
	pod, err := getter.GetPod(ctx, ns, name)
	if err != nil {
		// Fail closed: a meshed pod must never start without its rules, and without the
		// pod there is no telling whether it is meshed.
		return target{}, fmt.Errorf("weft-cni: cannot read pod %s to see whether it is meshed (check the API server and the "+
			"weft-cni ServiceAccount's access; docs/cni.md): %w", key, err)
	}
	// A pod deleted and created again under the same name while this sandbox was being
	// set up must not lend its settings to the old one.
	if uid := string(ka.K8S_POD_UID); uid != "" && uid != string(pod.UID) {
		return target{}, fmt.Errorf("weft-cni: pod %s has UID %s, the runtime asked for %s: the pod was replaced; retrying", key, pod.UID, uid)
	}
	rules, err := RulesFor(pod)
	if err != nil {
		return target{}, fmt.Errorf("weft-cni: meshed pod %s: %w", key, err)
	}
	return target{rules: rules, pod: key}, nil
}

// RulesFor returns the rules a pod asks for: nil unless the injector meshed it in CNI
// mode, which it marks by the validator init container; then the rules that container's
// arguments describe, exactly as weft-init would read them.
func RulesFor(pod *corev1.Pod) (*iptables.Config, error) {
	if !meshdefaults.Injected(pod.Annotations, func(yield func(string) bool) {
		for _, c := range pod.Spec.InitContainers {
			if !yield(c.Name) {
				return
			}
		}
	}) {
		return nil, nil
	}
	i := slices.IndexFunc(pod.Spec.InitContainers, func(c corev1.Container) bool {
		return c.Name == meshdefaults.ValidatorContainerName
	})
	if i < 0 {
		// Meshed with weft-init (InitContainer mode): weft-init writes the rules.
		return nil, nil
	}
	c := pod.Spec.InitContainers[i]
	cfg, err := iptables.ParseRuleArgs(c.Args, meshdefaults.ValidateFlag)
	if err != nil {
		return nil, fmt.Errorf("the %s container's arguments are not weft-init's rule flags (%w); "+
			"the injector and weft-cni versions may differ", c.Name, err)
	}
	return &cfg, nil
}

// printResult hands on the previous plugin's result byte for byte: weft-cni adds no
// interface, address or route, and a decode and re-encode could drop what a newer
// previous plugin wrote. (ParseConf has checked that it parses for this version.)
func printResult(conf *NetConf, out io.Writer) error {
	_, err := out.Write(append(bytes.Clone(conf.rawPrevResult), '\n'))
	return err
}

// logWriter sends the Runner's command lines to the log.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(string(p))
	return len(p), nil
}
