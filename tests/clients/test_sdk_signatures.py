"""The SDK's methods take typed, documented keyword arguments (no ``**options``), the same in the
sync and async clients."""

from __future__ import annotations

import inspect

import pytest

from tdmi.client import AsyncPoseClient, PoseClient, StreamOptions


@pytest.mark.parametrize("name", ["submit", "stream"])
def test_options_are_typed_keywords_documented_once_and_shared_by_both_clients(name: str) -> None:
    sync = inspect.signature(getattr(PoseClient, name))
    async_ = inspect.signature(getattr(AsyncPoseClient, name))
    assert list(sync.parameters) == list(async_.parameters)
    options = [p for p in sync.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert len(options) >= 4
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in sync.parameters.values())
    assert all(p.annotation is not inspect.Parameter.empty for p in options)
    assert [str(async_.parameters[p.name].annotation) for p in options] == [
        str(p.annotation) for p in options
    ]
    doc = inspect.getdoc(getattr(PoseClient, name)) or ""
    assert all(f"{p.name}:" in doc for p in options), doc


def test_stream_keywords_replace_the_fields_of_the_options_they_are_given() -> None:
    base = StreamOptions(quality=60, lookahead=1, max_in_flight=3)
    merged = base.overridden(lookahead=0, fps=None, model="tdmi-tiny")
    assert (merged.quality, merged.lookahead, merged.max_in_flight, merged.model) == (60, 0, 3, "tdmi-tiny")
    assert merged.fps is None and base.lookahead == 1  # frozen: the original is unchanged


def test_an_unknown_keyword_is_a_type_error(tmp_path) -> None:
    with PoseClient("http://127.0.0.1:9") as client, pytest.raises(TypeError, match="modle"):
        client.submit(tmp_path / "v.mp4", modle="tdmi-tiny")  # type: ignore[call-arg]
