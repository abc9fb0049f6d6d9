"""Least-privilege profiles learned from what workloads were seen doing (``vigil advise``).

:mod:`.observed` reads a workload's activity from the rollups migration 4 keeps; :mod:`.seccomp` turns its
syscalls into a seccomp profile, reads profiles, converts them for OCI runtimes and compares them with the
activity; :mod:`.apparmor` drafts an AppArmor profile from its programs, files, network and capabilities.
"""
