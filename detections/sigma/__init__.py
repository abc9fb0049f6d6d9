"""Sigma rules as vigil detections: ``vigil sigma import`` (:mod:`vigil.detections.sigma.importer`).

- :mod:`~vigil.detections.sigma.fields`: Sigma's Kubernetes audit fields, abstract ones included, on vigil events;
- :mod:`~vigil.detections.sigma.matching`: the matchers generated detection files are written in (Sigma semantics);
- :mod:`~vigil.detections.sigma.compiler`: pySigma's rule model compiled into matchers and conditions;
- :mod:`~vigil.detections.sigma.examples`: positive and negative examples synthesized from a rule;
- :mod:`~vigil.detections.sigma.render`: the generated file's source;
- :mod:`~vigil.detections.sigma.cli`: the ``sigma`` command group, registered with ``register(subparsers)``.
"""
