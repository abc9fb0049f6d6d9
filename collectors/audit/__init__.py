"""Kubernetes API audit log collection: webhook receiver, file tailer, format parsing."""
