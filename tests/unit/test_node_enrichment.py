"""The k8s context cache: bounded, exited containers kept for a grace period, unknown ids remembered briefly."""

from __future__ import annotations

from prometheus_client import REGISTRY

from vigil.collectors.node.enrichment import NO_CONTAINER, ContextCache
from vigil.collectors.runtime.cri import k8s_context


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ctx(container_id: str, pod: str = "web-1", **fields) -> dict:
    return k8s_context(namespace="shop", pod=pod, container_id=container_id, **fields)


def test_lookups_hit_what_was_put_and_miss_the_rest():
    cache = ContextCache()
    cache.put("a", ctx("a"), "cri")
    assert cache.lookup("a") == ctx("a")
    assert cache.lookup("b") is None
    assert cache.lookup("") is NO_CONTAINER  # a host process: nothing to resolve
    assert REGISTRY.get_sample_value("vigil_enrichment_cache_hit_ratio") == 0.5


def test_least_recently_used_entries_go_first():
    cache = ContextCache(max_entries=2)
    cache.put("a", ctx("a"), "cri")
    cache.put("b", ctx("b"), "cri")
    cache.lookup("a")
    cache.put("c", ctx("c"), "cri")
    assert (cache.lookup("a"), cache.lookup("b"), len(cache)) == (ctx("a"), None, 2)


def test_an_exited_container_keeps_its_pod_for_the_grace_period():
    clock = Clock()
    cache = ContextCache(exited_grace_s=60, clock=clock)
    cache.put("a", ctx("a"), "cri")
    cache.exited("a")
    clock.now += 59
    assert cache.lookup("a") == ctx("a")
    cache.put("a", ctx("a"), "api")  # a late update does not bring it back to life
    clock.now += 2
    assert cache.lookup("a") is None


def test_unknown_ids_are_remembered_for_a_while_and_then_asked_about_again():
    clock = Clock()
    cache = ContextCache(unknown_ttl_s=30, clock=clock)
    cache.put_unknown("x")
    assert cache.lookup("x") == k8s_context(container_id="x")
    clock.now += 31
    assert cache.lookup("x") is None
    cache.put_unknown("y")
    cache.put("y", ctx("y"), "cri")  # the runtime announced it after all
    clock.now += 31
    assert cache.lookup("y") == ctx("y")


def test_the_kubernetes_api_wins_over_cri():
    cache = ContextCache()
    cache.put("a", ctx("a", service_account="shop/web"), "api")
    cache.put("a", ctx("a"), "cri")
    assert cache.lookup("a")["service_account"] == "shop/web"
    cache.put("b", ctx("b"), "cri")
    cache.put("b", ctx("b", service_account="shop/web"), "api")
    assert cache.lookup("b")["service_account"] == "shop/web"


def test_membership_means_a_known_live_container():
    clock = Clock()
    cache = ContextCache(exited_grace_s=10, clock=clock)
    cache.put("a", ctx("a"), "cri")
    cache.put_unknown("x")
    assert "a" in cache and "x" not in cache and "b" not in cache
    cache.exited("a")
    clock.now += 11
    assert "a" not in cache
