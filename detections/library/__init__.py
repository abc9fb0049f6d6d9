"""The bundled detections, one file each.

The engine loads these files one by one (not as a package import), so a broken file disables only itself.
A detection file defines ``DETECTION`` with its metadata, logic and examples (see :mod:`vigil.detections.sdk`)::

    from vigil.sources.audit.fixtures import audit_record
    from vigil.detections.sdk import EventDetection, Example

    DETECTION = EventDetection(
        id="k8s.secret_read_by_user",
        title="Secret read by a person",
        description="Why this matters, and what an analyst should check.",
        severity="medium",
        mitre=["T1552.007"],
        kinds=["k8s.api"],
        match=lambda event: event.action == "get" and event.target.resource == "secrets",
        examples=[
            Example(name="read", source="k8s-audit", fires=True, record=audit_record("get", "secrets", name="db")),
            Example(name="list", source="k8s-audit", fires=False, record=audit_record("list", "secrets")),
        ],
    )

``vigil detections test`` runs the examples of every file here; ``vigil replay`` runs the files on saved logs.
"""
