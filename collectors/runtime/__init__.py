"""containerd, read by the node collector: its event stream (``watcher``, decoded by ``events``) and the CRI
RuntimeService that maps a container to its pod (``cri``). What the records are and how they map into events is
:mod:`vigil.sources.containerd`; they are what ``vigil collect node`` ships to ``raw.containerd``."""
