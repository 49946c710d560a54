package runc

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// joinNetwork makes spec join the network namespace at nsPath (made and
// networked by package netns before runc starts) and bind resolvConf, which
// names the namespace's DNS forwarder, as the container's /etc/resolv.conf in
// place of the host's (whose name servers may be on the host's loopback).
func joinNetwork(spec *specs.Spec, nsPath, resolvConf string) {
	spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: nsPath})
	m := specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolvConf, Options: []string{"rbind", "ro"}}
	for i := range spec.Mounts {
		if spec.Mounts[i].Destination == m.Destination {
			spec.Mounts[i] = m
			return
		}
	}
	spec.Mounts = append(spec.Mounts, m)
}
