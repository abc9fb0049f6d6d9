"""``vigil siem publish`` flags: topic formats, forwarders, and the errors a wrong combination gets."""

from __future__ import annotations

import argparse

import pytest

from vigil.config import Settings
from vigil.siem import cli
from vigil.siem.hec import HecForwarder
from vigil.siem.syslog import SyslogForwarder


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    return parser.parse_args(["siem", "publish", *argv])


def test_topic_formats_are_pairs_of_topic_and_known_format():
    args = parse("--topic-format", "alerts.splunk=cef", "--topic-format", "alerts.lake=ocsf")
    assert args.topic_format == [("alerts.splunk", "cef"), ("alerts.lake", "ocsf")]
    with pytest.raises(SystemExit):
        parse("--topic-format", "alerts.x=leef")


def test_forwarders_come_from_the_flags_and_the_token_from_its_file(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret\n")
    args = parse("--hec-url", "https://splunk:8088", "--hec-token-file", str(token_file), "--hec-format", "ecs",
                 "--syslog", "siem.example:6514", "--syslog-tls")
    settings = Settings(node="node-1")
    hec, syslog = cli.build_forwarders(cli.merge_flags(args, settings.siem), settings)
    assert isinstance(hec, HecForwarder) and isinstance(syslog, SyslogForwarder)
    assert "s3cret" not in repr(hec) and repr(syslog) == "SyslogForwarder(siem.example:6514, tls=True)"


def test_settings_configure_the_publisher_and_flags_override_them():
    settings = Settings()
    settings.siem.hec_url, settings.siem.hec_token, settings.siem.syslog = "https://splunk:8088", "t", "siem:6514"
    forwarders = cli.build_forwarders(cli.merge_flags(parse("--syslog", "other:514"), settings.siem), settings)
    assert [type(f) for f in forwarders] == [HecForwarder, SyslogForwarder]
    assert repr(forwarders[1]) == "SyslogForwarder(other:514, tls=False)"
    assert cli.configured_topic_formats(settings.siem) == {"alerts.ocsf": "ocsf", "alerts.ecs": "ecs",
                                                            "alerts.cef": "cef"}


@pytest.mark.parametrize("argv,message", [
    (["--hec-url", "http://x"], "HEC needs a token"),
    (["--hec-url", "http://x", "--hec-token-file", "/nonexistent/token"], "cannot read --hec-token-file"),
    (["--syslog", "no-port"], "expected HOST:PORT"),
    (["--no-topics"], "nothing to publish to"),
])
def test_unusable_flags_exit_2_with_a_clear_message(argv, message, capsys):
    assert cli.run_publish(parse(*argv), Settings()) == 2
    assert message in capsys.readouterr().err
