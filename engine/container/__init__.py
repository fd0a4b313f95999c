"""The container runtime: namespaces, mounts, cgroups and capabilities of a container, its
init, shim, logs, health and restarts."""
