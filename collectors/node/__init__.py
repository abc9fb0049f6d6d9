"""The node collector (``vigil collect node``): the eBPF sensor and containerd's events of one Kubernetes node,
enriched with the pod each record comes from, shipped to Kafka.

``enrichment`` holds the container → pod cache, ``kubeapi`` the optional Kubernetes API watch that feeds
it, ``collector`` the process that runs it all, ``cli`` its command line.
"""
