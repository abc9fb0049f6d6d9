"""The reader of the kernel's audit records: ``netlink`` follows the audit socket's read-only multicast group. The
node collector (``vigil collect node``) runs it and adds each record's pod; what the records are and how they map
into events is :mod:`vigil.sources.kernel_audit`."""
