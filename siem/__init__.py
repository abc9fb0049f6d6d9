"""SIEM outputs: alerts rendered as OCSF, ECS and CEF on Kafka topics, and forwarded to Splunk HEC and syslog."""
