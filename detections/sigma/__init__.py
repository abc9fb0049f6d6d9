"""Sigma rules as vigil detections: ``vigil sigma import`` (:mod:`detections.sigma.importer`).

- :mod:`~detections.sigma.fields`: Sigma's Kubernetes audit fields, abstract ones included, on vigil events;
- :mod:`~detections.sigma.matching`: the matchers generated detection files are written in (Sigma semantics);
- :mod:`~detections.sigma.compiler`: pySigma's rule model compiled into matchers and conditions;
- :mod:`~detections.sigma.examples`: positive and negative examples synthesized from a rule;
- :mod:`~detections.sigma.render`: the generated file's source;
- :mod:`~detections.sigma.cli`: the ``sigma`` command group, registered with ``register(subparsers)``.
"""
