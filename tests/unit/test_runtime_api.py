"""The checked-in protobuf modules are exactly what the .proto files beside them compile to."""

from __future__ import annotations

from vigil.collectors.runtime.api.compile import API_DIR, PROTOS, compile_protos


def test_generated_modules_match_their_definitions(tmp_path):
    generated = compile_protos(tmp_path)
    assert {path.name for path in generated} == {p.name for p in API_DIR.glob("*_pb2*.py")}
    assert len(generated) == len(PROTOS) + 3  # three of the definitions have a service
    for path in generated:
        assert path.read_text() == (API_DIR / path.name).read_text(), f"regenerate {path.name}"
