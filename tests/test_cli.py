"""The command line: `mediator check` names file and line; `mediator tx` talks to a running node."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

from conftest import Harness

from mediator.clients.mllp import MllpClient
from mediator.testing import REPO, adt_message


async def run_cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "mediator", *args, cwd=REPO,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    return proc.returncode or 0, out.decode(), err.decode()


def copy_setup(tmp: Path) -> Path:
    for name in ("channels", "mappings"):
        shutil.copytree(REPO / name, tmp / name)
    shutil.copy(REPO / "config.yaml", tmp / "config.yaml")
    return tmp / "config.yaml"


async def test_check_accepts_the_shipped_configuration() -> None:
    code, out, err = await run_cli("check", "--config", str(REPO / "config.yaml"))
    assert code == 0, err
    assert "12 channel(s), 9 mapping(s)" in out


async def test_check_names_file_and_line_of_each_problem(tmp_path: Path) -> None:
    cfg = copy_setup(tmp_path)
    channel = tmp_path / "channels" / "adt-sih.yaml"
    channel.write_text(channel.read_text().replace("  - destination: shr", "  - destination: nowhere")
                       .replace("  protocol: hl7v2", "  protocol: hl7v2\n  transport: [mllp]"))
    (tmp_path / "channels" / "broken.yaml").write_text("name: broken\nsource: {protocol: hl7v2\n")
    cfg.write_text(cfg.read_text().replace("  port: 2575", "  port: 99999"))
    code, out, err = await run_cli("check", "--config", str(cfg))
    assert code == 1
    assert f"{channel}:6: source.transport: Extra inputs are not permitted" in err
    assert f"{tmp_path / 'channels' / 'broken.yaml'}:3:" in err
    assert f"{cfg}:" in err and "mllp.port" in err
    assert "problem(s) found" in err


async def test_check_reports_unknown_destination(tmp_path: Path) -> None:
    cfg = copy_setup(tmp_path)
    channel = tmp_path / "channels" / "cda-documents.yaml"
    channel.write_text(channel.read_text().replace("destination: shr", "destination: nowhere"))
    code, _, err = await run_cli("check", "--config", str(cfg))
    assert code == 1
    assert f"{channel}:8: unknown destination 'nowhere'" in err


async def test_tx_list_show_rerun(harness: Harness) -> None:
    c = await MllpClient.connect("127.0.0.1", harness.mllp_port)
    await c.send(adt_message(1))
    await c.close()
    await harness.wait_idle()
    url = ["--url", harness.base]
    code, out, err = await run_cli("tx", "list", *url, "--status", "Successful")
    assert code == 0, err
    tx_id = out.splitlines()[1].split()[0]
    assert "Successful" in out and "adt-sih" in out
    code, out, _ = await run_cli("tx", "show", tx_id, *url)
    assert code == 0 and f'"id": "{tx_id}"' in out and '"outcome": "delivered"' in out
    code, out, _ = await run_cli("tx", "rerun", tx_id, *url)
    assert code == 0 and f"rerun of {tx_id} queued as" in out
    await harness.wait_idle()
    code, out, _ = await run_cli("tx", "list", *url, "--json")
    assert out.count('"rerun_of": "' + tx_id) == 1
    code, _, err = await run_cli("tx", "show", "NOPE", *url)
    assert code != 0 and "404" in err


async def test_send_prints_each_ack(harness: Harness, tmp_path: Path) -> None:
    good = tmp_path / "a01.hl7"
    good.write_text(adt_message(7).replace("\r", "\n"))
    bad = tmp_path / "bad.hl7"
    bad.write_text(adt_message(8).replace("|P|2.5|", "|P|9.9|"))
    code, out, _ = await run_cli("send", str(good), str(bad), "--mllp", f"127.0.0.1:{harness.mllp_port}")
    assert code == 1
    assert f"{good}: AA" in out and f"{bad}: AR" in out and "ERR|" in out
