"""The audit collector's receivers: the kube-apiserver's audit webhook (``webhook``). Files are followed by the
generic tailer (:mod:`vigil.collectors.tailer`); what audit records are is :mod:`vigil.sources.audit`."""
