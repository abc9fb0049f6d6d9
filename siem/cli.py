"""``vigil siem publish``: the alerts topic to per-format topics, Splunk HEC and syslog."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import sys
from pathlib import Path

from aiokafka.errors import KafkaError

from vigil import metrics
from vigil.config import Secret, Settings, SiemSettings
from vigil.siem.formats import RENDERERS
from vigil.siem.hec import HecForwarder
from vigil.siem.outputs import Output
from vigil.siem.publisher import run_publisher
from vigil.siem.syslog import SyslogForwarder

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    siem = sub.add_parser("siem", help="forward alerts to SIEMs")
    siem_sub = siem.add_subparsers(dest="siem_command", required=True, metavar="ACTION")
    publish = siem_sub.add_parser(
        "publish", help="consume the alerts topic into OCSF/ECS/CEF topics and optional HEC/syslog forwarders")
    publish.add_argument("--topic-format", action="append", type=_topic_format, metavar="TOPIC=FORMAT",
                         help="a format topic (name without the topic prefix) and its format "
                              f"({'|'.join(RENDERERS)}); repeatable; default: VIGIL_SIEM_TOPIC_FORMATS")
    publish.add_argument("--no-topics", action="store_true", help="forward only to HEC/syslog, write no format topic")
    # Each flag overrides its VIGIL_SIEM_* setting (see the README's configuration table).
    publish.add_argument("--hec-url", help="Splunk HEC base URL, e.g. https://splunk:8088")
    publish.add_argument("--hec-token-file", help="file holding the HEC token (or VIGIL_SIEM_HEC_TOKEN)")
    publish.add_argument("--hec-format", choices=list(RENDERERS), help="event format sent to HEC (default ocsf)")
    publish.add_argument("--hec-batch", type=int, help="events per HEC request (default 100)")
    publish.add_argument("--hec-ca", help="CA file to verify the HEC server's certificate")
    publish.add_argument("--syslog", metavar="HOST:PORT", help="syslog receiver (RFC 5424 + CEF, octet-counted TCP)")
    publish.add_argument("--syslog-tls", action="store_true", default=None,
                         help="use TLS to the syslog receiver (system CAs)")
    publish.add_argument("--syslog-tls-ca", help="use TLS, trusting this CA file")
    publish.add_argument("--group-id", help="Kafka consumer group (default vigil-siem); give each publisher of an "
                                            "independent destination its own")
    publish.set_defaults(func=run_publish)


def _topic_format(text: str) -> tuple[str, str]:
    topic, sep, format_name = text.partition("=")
    if not sep or not topic or format_name not in RENDERERS:
        raise argparse.ArgumentTypeError(f"expected TOPIC=FORMAT with FORMAT one of {', '.join(RENDERERS)}")
    return topic, format_name


def merge_flags(args: argparse.Namespace, siem: SiemSettings) -> SiemSettings:
    """The SIEM settings with every flag given on the command line taking precedence."""
    merged = dataclasses.replace(siem)
    for flag, name in (("hec_url", "hec_url"), ("hec_format", "hec_format"), ("hec_batch", "hec_batch"),
                       ("hec_ca", "hec_cafile"), ("syslog", "syslog"), ("syslog_tls", "syslog_tls"),
                       ("syslog_tls_ca", "syslog_cafile"), ("group_id", "group_id")):
        if getattr(args, flag) is not None:
            setattr(merged, name, getattr(args, flag))
    if args.hec_token_file:
        try:
            merged.hec_token = Secret(Path(args.hec_token_file).read_text().strip())
        except OSError as exc:
            raise ValueError(f"cannot read --hec-token-file {args.hec_token_file}: {exc.strerror}") from exc
    return merged


def build_forwarders(siem: SiemSettings, settings: Settings) -> list[Output]:
    """The direct forwarders the settings ask for; raises ValueError for a combination that cannot work."""
    forwarders: list[Output] = []
    if siem.hec_url:
        if not siem.hec_token:
            raise ValueError("HEC needs a token (--hec-token-file or VIGIL_SIEM_HEC_TOKEN[_FILE])")
        forwarders.append(HecForwarder(siem.hec_url, siem.hec_token, format_name=siem.hec_format,
                                       batch_size=siem.hec_batch, cafile=siem.hec_cafile))
    if siem.syslog:
        host, sep, port = siem.syslog.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ValueError(f"syslog: expected HOST:PORT, got {siem.syslog!r}")
        forwarders.append(SyslogForwarder(host.strip("[]"), int(port), cafile=siem.syslog_cafile,
                                          tls=siem.syslog_tls or bool(siem.syslog_cafile), hostname=settings.node))
    return forwarders


def configured_topic_formats(siem: SiemSettings) -> dict[str, str]:
    pairs = [_topic_format(item.strip()) for item in siem.topic_formats.split(",") if item.strip()]
    return dict(pairs)


def run_publish(args: argparse.Namespace, settings: Settings) -> int:
    try:
        siem = merge_flags(args, settings.siem)
        forwarders = build_forwarders(siem, settings)
        configured = configured_topic_formats(siem)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        print(f"vigil siem publish: {exc}", file=sys.stderr)
        return 2
    topic_formats = {} if args.no_topics else (dict(args.topic_format) if args.topic_format else configured)
    if topic_formats == {} and not forwarders:
        print("vigil siem publish: nothing to publish to (--no-topics without --hec-url or --syslog)", file=sys.stderr)
        return 2
    metrics.serve(settings)
    try:
        asyncio.run(run_publisher(settings, topic_formats, forwarders, group_id=siem.group_id))
    except KafkaError as exc:
        log.error("siem publisher cannot run", extra={"error": str(exc)})
        return 1
    return 0
