"""CDA channels chosen by document type (``source.document_codes`` / ``document_templates``): the same
choice for ``POST /cda`` (over real HTTP) and ``mediator map run``; an unknown type without a
catch-all is refused (422, naming the document code) and kept as Rejected; ``mediator check`` names
file and line of a bad value."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

import pytest
from conftest import make_harness, run_map_cli

from mediator.accept.channels import ChannelRouter, DocumentType
from mediator.cda.safe_xml import parse_xml
from mediator.config import ChannelConfig, ConfigError, DestinationConfig, load_channel
from mediator.testing import CORPORA

ROOT = Path(__file__).resolve().parent.parent
MA_CCD = ROOT / "mappings" / "tests" / "ma_ccd.xml"  # 34133-9, CCD templateId
DISCHARGE = CORPORA / "ms-fhir-converter" / "ccda" / "Discharge_Summary.ccda"  # 18842-5
CDA = {"Content-Type": "application/hl7-cda+xml"}
DS_TEMPLATE = "2.16.840.1.113883.10.20.22.1.8"


def channel(name: str, priority: int = 0, **source: object) -> ChannelConfig:
    return ChannelConfig.model_validate({"name": name, "priority": priority, "mapping": "cda_to_fhir.yaml",
                                         "source": {"protocol": "cda", "transports": ["http"], **source}})


def order(*channels: ChannelConfig) -> list[ChannelConfig]:
    return sorted(channels, key=lambda c: (-c.priority, c.name))  # as load_channels sorts them


def test_a_channel_naming_the_type_wins_over_the_catch_all_whatever_its_name_or_priority() -> None:
    router = ChannelRouter(order(channel("a-all", priority=5), channel("z-ds", document_codes=["18842-5"])))
    assert router.for_cda(DocumentType("18842-5")).channel.name == "z-ds"
    assert router.for_cda(DocumentType("34133-9")).channel.name == "a-all"
    assert router.for_cda(DocumentType("")).channel.name == "a-all"


def test_templates_match_and_priority_orders_the_specific_channels() -> None:
    router = ChannelRouter(order(channel("by-code", document_codes=["18842-5"]),
                                 channel("by-template", priority=3, document_templates=[DS_TEMPLATE])))
    root = parse_xml(DISCHARGE.read_bytes())
    assert DocumentType.of(root) == DocumentType("18842-5", ("2.16.840.1.113883.10.20.22.1.1", DS_TEMPLATE))
    assert router.for_cda(root).channel.name == "by-template"
    assert router.for_cda(DocumentType("X", (DS_TEMPLATE,))).channel.name == "by-template"
    assert router.for_cda(DocumentType("18842-5")).channel.name == "by-code"


def test_no_catch_all_names_the_document_code() -> None:
    router = ChannelRouter([channel("ds", document_codes=["18842-5"])])
    sel = router.for_cda(parse_xml(MA_CCD.read_bytes()))
    assert sel.channel is None
    assert "'34133-9'" in sel.problem and "2.16.840.1.113883.10.20.22.1.2" in sel.problem
    assert ChannelRouter([]).for_cda(DocumentType("1")).problem == "no channel accepts CDA documents"
    # a disabled or MLLP-only channel takes nothing over HTTP
    off = channel("off")
    off.enabled = False
    assert ChannelRouter([off]).for_cda(DocumentType("1")).channel is None


@pytest.mark.parametrize("source, line, text", [
    ('  document_codes: ["18842-5", "bad code"]\n', 4, "document code 'bad code' must be a code without spaces"),
    ("  document_templates:\n    - 2.16.840.1.113883.10.20.22.1.8\n    - CCD\n", 6, "template 'CCD' must be an OID"),
])
def test_a_bad_document_type_is_refused_with_file_and_line(tmp_path: Path, source: str, line: int, text: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nsource:\n  protocol: cda\n" + source + "routes:\n  - destination: shr\n")
    with pytest.raises(ConfigError) as exc:
        load_channel(f, {"shr": DestinationConfig(url="http://x")})
    err = exc.value.errors[0]
    assert (err.line, text in str(err)) == (line, True), str(err)


def test_document_types_are_for_cda_channels_only(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("name: c\nsource:\n  protocol: hl7v2\n  document_codes: ['18842-5']\nmapping: adt_to_fhir.yaml\n")
    with pytest.raises(ConfigError) as exc:
        load_channel(f, {})
    assert exc.value.errors[0].line == 4 and "only for CDA channels" in str(exc.value.errors[0])


def test_the_shipped_channels_check_and_route_discharge_summaries() -> None:
    from mediator.config import load_channels, load_config

    router = ChannelRouter(load_channels(load_config(ROOT / "config.yaml")))
    assert router.for_cda(parse_xml(DISCHARGE.read_bytes())).channel.name == "cda-discharge-summaries"
    assert router.for_cda(parse_xml(MA_CCD.read_bytes())).channel.name == "cda-documents"


# ------------------------------------------------------------------------------------ over HTTP
async def test_post_cda_routes_by_document_type(tmp_path: Path) -> None:
    async with make_harness(tmp_path / "data") as h:
        for doc, name in ((DISCHARGE, "cda-discharge-summaries"), (MA_CCD, "cda-documents")):
            async with h.http.post(h.base + "/cda", data=doc.read_bytes(), headers=CDA) as r:
                assert r.status == 202, await r.text()
                tx_id = r.headers["X-Transaction-Id"]
            tx = await h.wait_status(tx_id)
            assert tx["status"] == "Successful", tx["error"]
            assert tx["channel"] == name


def channels_without_catch_all(tmp_path: Path) -> Path:
    folder = tmp_path / "channels"
    folder.mkdir()
    shutil.copy(ROOT / "channels" / "cda-discharge-summaries.yaml", folder)
    shutil.copy(ROOT / "channels" / "adt-sih.yaml", folder)
    return folder


async def test_unknown_document_type_without_catch_all_is_refused_and_logged(tmp_path: Path) -> None:
    folder = channels_without_catch_all(tmp_path)
    async with make_harness(tmp_path / "data", channels_dir=str(folder)) as h:
        async with h.http.post(h.base + "/cda", data=MA_CCD.read_bytes(), headers=CDA) as r:
            assert r.status == 422
            outcome = await r.json(content_type=None)
            tx_id = r.headers["X-Transaction-Id"]
        issue = outcome["issue"][0]
        assert outcome["resourceType"] == "OperationOutcome" and issue["code"] == "not-supported"
        assert "'34133-9'" in issue["diagnostics"] and issue["expression"] == ["ClinicalDocument.code"]
        tx = await h.get_json(f"/api/transactions/{tx_id}")
        assert tx["status"] == "Rejected" and "34133-9" in tx["error"]
        # the discharge summary still goes through its channel
        async with h.http.post(h.base + "/cda", data=DISCHARGE.read_bytes(), headers=CDA) as r:
            assert r.status == 202, await r.text()
            tx = await h.wait_status(r.headers["X-Transaction-Id"])
        assert tx["channel"] == "cda-discharge-summaries" and tx["status"] == "Successful", tx["error"]


# ------------------------------------------------------------------------------------ map run
run_cli = run_map_cli


def test_map_run_uses_the_channel_post_cda_would_choose(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    assert run_cli("run", "--compact", str(DISCHARGE)) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["resourceType"] == "Bundle"
    assert "channel 'cda-discharge-summaries'" in err and "CDA 18842-5" in err
    assert run_cli("run", "--compact", str(MA_CCD)) == 0
    assert "channel 'cda-documents'" in capsys.readouterr().err


def test_map_run_refuses_what_post_cda_refuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = channels_without_catch_all(tmp_path)
    config = tmp_path / "config.yaml"
    text = (ROOT / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("channels_dir: channels", f"channels_dir: {folder}")
    config.write_text(text.replace("mappings_dir: mappings", f"mappings_dir: {ROOT / 'mappings'}"), encoding="utf-8")
    assert run_cli("run", "--config", str(config), str(MA_CCD)) == 2
    err = capsys.readouterr().err
    assert "no channel accepts CDA documents of document code '34133-9'" in err and "--mapping" in err
    assert run_cli("run", "--config", str(config), "--compact", str(DISCHARGE)) == 0
    assert "channel 'cda-discharge-summaries'" in capsys.readouterr().err


async def test_a_rerun_of_a_refused_document_chooses_its_channel_by_document_type(tmp_path: Path) -> None:
    """A document refused for want of a channel is rerun once the integrator adds one: the worker chooses
    by document type as the door does (not the first CDA channel, here the discharge summaries')."""
    folder = channels_without_catch_all(tmp_path)
    async with make_harness(tmp_path / "data", channels_dir=str(folder), worker__processes=0) as h:
        async with h.http.post(h.base + "/cda", data=MA_CCD.read_bytes(), headers=CDA) as r:
            assert r.status == 422
            refused = r.headers["X-Transaction-Id"]

        async def rerun() -> dict:
            async with h.http.post(f"{h.base}/api/transactions/{refused}/rerun") as r:
                assert r.status in (200, 202), await r.text()
                new_id = (await r.json())["id"]
            return await h.wait_status(new_id)
        tx = await rerun()
        assert tx["status"] == "Failed" and "'34133-9'" in tx["error"], tx
        shutil.copy(ROOT / "channels" / "cda-documents.yaml", folder)  # the catch-all, picked up by the watcher
        for _ in range(100):
            if any(c.name == "cda-documents" for c in h.node.router.channels):
                break
            await asyncio.sleep(0.1)
        tx = await rerun()
        assert tx["status"] == "Successful" and tx["channel"] == "cda-documents", tx
