"""`cti report`: a period's figures from the database, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from test_stats import LIMITS, agent_day, legs_of, the_hour

from crm_core.store import CrmStore
from cti.cli import main
from cti.stats.figures import grouped
from cti.stats.store import write_activity, write_legs


@pytest.fixture
async def config_file(tmp_path: Path) -> Path:
    db = tmp_path / "report.db"
    store = await CrmStore.open(f"sqlite+aiosqlite:///{db}")
    await write_legs(store.engine, legs_of(the_hour()))
    await write_activity(store.engine, agent_day())
    await store.close()
    path = tmp_path / "cti.toml"
    path.write_text(
        f'[database]\nurl = "sqlite:///{db}"\n[stats]\nservice_level_s = 20.0\n'
        "short_abandon_s = 5.0\n",
        encoding="utf-8",
    )
    return path


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_csv_has_one_row_per_tier_with_the_worked_out_figures(
    config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = run(capsys, "report", "-c", str(config_file), "--from", "2026-11-23",
                         "--to", "2026-11-24", "--group-by", "tier", "--csv")  # fmt: skip
    assert status == 0
    rows = {r["tier"]: r for r in csv.DictReader(io.StringIO(out))}
    assert sorted(rows) == ["tier1", "tier2"]
    assert (rows["tier1"]["offered"], rows["tier1"]["service_level"]) == ("5", "0.5")
    assert rows["tier1"]["short_abandoned"] == "1" and rows["tier1"]["p90_answer_s"] == "25.0"


def test_json_and_table_say_the_same(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("report", "-c", str(config_file), "--from", "2026-11-23T00:00Z", "--to",
            "2026-11-23T01:00Z")  # fmt: skip
    status, out, _ = run(capsys, *args, "--json")
    assert status == 0
    report = json.loads(out)
    expected = grouped(legs_of(the_hour()), "queue", LIMITS)
    assert report["groups"]["tier1"]["offered"] == expected["tier1"].offered == 5
    assert report["agents"]["Agent 1001"]["pause_by_reason"] == {"lunch": 300.0}
    status, out, _ = run(capsys, *args)
    assert status == 0 and "tier1" in out and "agent Agent 1001: 2 calls" in out


def test_a_bad_period_is_refused(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "report", "-c", str(config_file), "--from", "2026-11-24",
                         "--to", "2026-11-23")  # fmt: skip
    assert status == 2 and "--to must be after --from" in err
    status, _, err = run(capsys, "report", "-c", str(config_file), "--from", "soon",
                         "--to", "2026-11-23")  # fmt: skip
    assert status == 2 and "--from: not an ISO date" in err
