"""The node agent: a small kubelet that runs the pods bound to its node as local processes.

Each container is a process in its own mount namespace (bubblewrap), sharing the host's
network; volumes appear at their mount paths inside that namespace only.
"""
