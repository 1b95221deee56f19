package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
)

// Installer puts weft-cni in place on one node: the binary into the runtime's CNI bin
// directory, a kubeconfig next to the conflist, and the plugin's entry at the end of the
// conflist's plugin chain. The weft-cni DaemonSet runs it as its only container: it
// installs, keeps the installation current (another CNI rewriting the conflist, the
// ServiceAccount token rotating), and uninstalls when the pod is stopped.
type Installer struct {
	// BinDir and NetDir are where this process sees the host's CNI bin and conf
	// directories (hostPath mounts).
	BinDir, NetDir string
	// HostNetDir is NetDir as the host (the runtime that runs the plugin) sees it: the
	// kubeconfig path written into the conflist. Default: NetDir.
	HostNetDir string
	// Conflist names the file to chain into; default: the first *.conflist in NetDir in
	// lexical order, which is the file containerd and CRI-O use.
	Conflist string
	// Binary is the plugin binary to copy (this executable).
	Binary string
	// APIServer is the API server's URL as seen from the host network namespace.
	APIServer string
	// TokenFile and CAFile are the ServiceAccount's token and the cluster CA.
	TokenFile, CAFile string
	// ExcludeNamespaces go into the conflist entry (see NetConf).
	ExcludeNamespaces []string
	// IPTables and IP6Tables go into the conflist entry (see NetConf).
	IPTables, IP6Tables string
	Log                 logr.Logger
}

// KubeconfigName is the kubeconfig's file name in the CNI conf directory.
const KubeconfigName = "weft-cni.kubeconfig"

// MaxConflistBytes bounds what the installer reads: a conflist is a few hundred bytes.
const MaxConflistBytes = 1 << 20

func (in Installer) hostNetDir() string {
	if in.HostNetDir != "" {
		return in.HostNetDir
	}
	return in.NetDir
}

// ConflistPath is the file the plugin is chained into.
func (in Installer) ConflistPath() (string, error) {
	if in.Conflist != "" {
		return filepath.Join(in.NetDir, in.Conflist), nil
	}
	entries, err := os.ReadDir(in.NetDir)
	if err != nil {
		return "", fmt.Errorf("read the CNI conf directory: %w", err)
	}
	for _, e := range entries { // ReadDir sorts by name
		if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".conflist") {
			return filepath.Join(in.NetDir, e.Name()), nil
		}
		if e.Type().IsRegular() && (strings.HasSuffix(e.Name(), ".conf") || strings.HasSuffix(e.Name(), ".json")) {
			return "", fmt.Errorf("%s is a single-plugin configuration; weft-cni chains only into a .conflist "+
				"(convert it, or name the conflist with --conflist)", e.Name())
		}
	}
	return "", fmt.Errorf("no *.conflist in %s yet: the node's primary CNI has not written its configuration", in.NetDir)
}

// Install puts the binary, the kubeconfig and the conflist entry in place. It is
// idempotent: what is already current is not rewritten.
func (in Installer) Install() error {
	if err := in.installBinary(); err != nil {
		return err
	}
	if err := in.writeKubeconfig(); err != nil {
		return err
	}
	path, err := in.ConflistPath()
	if err != nil {
		return err
	}
	changed, err := editConflist(path, func(plugins []any) ([]any, error) {
		return InsertPlugin(plugins, in.entry())
	})
	if err != nil {
		return err
	}
	if changed {
		in.Log.Info("Chained weft-cni into the conflist", "conflist", path)
	}
	return nil
}

// Uninstall removes the conflist entry first (so no new sandbox calls the plugin), then
// the kubeconfig and the binary. Missing pieces are not errors.
func (in Installer) Uninstall() error {
	var errs []error
	if path, err := in.ConflistPath(); err == nil {
		changed, err := editConflist(path, func(plugins []any) ([]any, error) { return RemovePlugin(plugins), nil })
		if err != nil {
			errs = append(errs, err)
		} else if changed {
			in.Log.Info("Removed weft-cni from the conflist", "conflist", path)
		}
	}
	for _, p := range []string{filepath.Join(in.NetDir, KubeconfigName), filepath.Join(in.BinDir, PluginType)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Run installs, then re-checks every interval until ctx ends, then uninstalls.
func (in Installer) Run(ctx context.Context, interval time.Duration) error {
	if err := in.Install(); err != nil {
		return err
	}
	in.Log.Info("weft-cni installed", "binDir", in.BinDir, "netDir", in.NetDir)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return in.Uninstall()
		case <-t.C:
			if err := in.Install(); err != nil {
				// Keep going: a transient state (the primary CNI rewriting its file)
				// heals on the next round; the log says what is wrong meanwhile.
				in.Log.Error(err, "Keeping weft-cni installed")
			}
		}
	}
}

func (in Installer) entry() map[string]any {
	e := map[string]any{
		"type":       PluginType,
		"kubeconfig": filepath.Join(in.hostNetDir(), KubeconfigName),
	}
	if len(in.ExcludeNamespaces) > 0 {
		e["excludeNamespaces"] = in.ExcludeNamespaces
	}
	if in.IPTables != "" {
		e["iptables"] = in.IPTables
	}
	if in.IP6Tables != "" {
		e["ip6tables"] = in.IP6Tables
	}
	return e
}

// InsertPlugin puts entry at the end of a conflist's plugins, replacing any weft-cni
// entry already there, so running it again changes nothing and a weft-cni that another
// plugin was appended after moves back to the end (it must see the final result).
func InsertPlugin(plugins []any, entry map[string]any) ([]any, error) {
	if len(RemovePlugin(slices.Clone(plugins))) == 0 {
		return nil, errors.New("the conflist has no plugins: weft-cni must be chained after the plugin that creates the pod's interface")
	}
	out := RemovePlugin(plugins)
	return append(out, entry), nil
}

// RemovePlugin drops every weft-cni entry.
func RemovePlugin(plugins []any) []any {
	return slices.DeleteFunc(plugins, func(p any) bool {
		m, ok := p.(map[string]any)
		return ok && m["type"] == PluginType
	})
}

// editConflist applies edit to the file's "plugins" and writes the result back
// atomically when it differs. Every other field is kept (json.Marshal of a map sorts
// the keys, which the runtimes do not mind).
func editConflist(path string, edit func([]any) ([]any, error)) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	raw, err := io.ReadAll(io.LimitReader(f, MaxConflistBytes+1))
	f.Close()
	if err != nil {
		return false, err
	}
	if len(raw) > MaxConflistBytes {
		return false, fmt.Errorf("%s is larger than %d bytes; not a conflist", path, MaxConflistBytes)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		return false, fmt.Errorf("parse %s: %w", path, err)
	}
	plugins, ok := doc["plugins"].([]any)
	if !ok {
		return false, fmt.Errorf("%s has no plugins list", path)
	}
	before, _ := json.Marshal(plugins)
	plugins, err = edit(plugins)
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	after, _ := json.Marshal(plugins)
	if bytes.Equal(before, after) {
		return false, nil
	}
	doc["plugins"] = plugins
	out, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return false, err
	}
	return true, writeAtomic(path, append(out, '\n'), 0o644)
}

func (in Installer) installBinary() error {
	src, err := os.ReadFile(in.Binary)
	if err != nil {
		return fmt.Errorf("read the plugin binary: %w", err)
	}
	dst := filepath.Join(in.BinDir, PluginType)
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, src) {
		return nil
	}
	if err := writeAtomic(dst, src, 0o755); err != nil {
		return fmt.Errorf("install the plugin binary: %w", err)
	}
	in.Log.Info("Installed the plugin binary", "path", dst)
	return nil
}

// writeKubeconfig writes the ServiceAccount's current token with the API server's
// address and CA. Only root may read it (0600): it grants get on pods.
func (in Installer) writeKubeconfig() error {
	token, err := os.ReadFile(in.TokenFile)
	if err != nil {
		return fmt.Errorf("read the ServiceAccount token: %w", err)
	}
	ca, err := os.ReadFile(in.CAFile)
	if err != nil {
		return fmt.Errorf("read the cluster CA: %w", err)
	}
	kc := map[string]any{
		"apiVersion":      "v1",
		"kind":            "Config",
		"current-context": "weft-cni",
		"clusters": []any{map[string]any{"name": "local", "cluster": map[string]any{
			"server": in.APIServer, "certificate-authority-data": ca,
		}}},
		"users": []any{map[string]any{"name": "weft-cni", "user": map[string]any{
			"token": strings.TrimSpace(string(token)),
		}}},
		"contexts": []any{map[string]any{"name": "weft-cni", "context": map[string]any{"cluster": "local", "user": "weft-cni"}}},
	}
	out, err := json.MarshalIndent(kc, "", "  ")
	if err != nil {
		return err
	}
	dst := filepath.Join(in.NetDir, KubeconfigName)
	if cur, err := os.ReadFile(dst); err == nil && bytes.Equal(cur, out) {
		return nil
	}
	return writeAtomic(dst, out, 0o600)
}

// writeAtomic replaces path through a temporary file in the same directory, so the
// runtime never reads half a file (it re-reads the conf directory on every change).
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
