"""The live suite: the daemon against a real Asterisk 22 (skipped unless CTI_TEST_ASTERISK).

``CTI_TEST_ASTERISK`` names an Asterisk install prefix (``/opt/asterisk22``: the directory
holding ``sbin/asterisk`` and ``lib/asterisk/modules``). One Asterisk is started per test
session from the shipped ``docker/asterisk`` config plus the lab overlay (``lab.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from live.lab import AsteriskLab

PREFIX = os.environ.get("CTI_TEST_ASTERISK", "")
SKIP_REASON = (
    "CTI_TEST_ASTERISK is not set: it names an Asterisk 22 install prefix "
    "(e.g. /opt/asterisk22) to run the live suite against a real Asterisk"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if PREFIX:
        return
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.skip(reason=SKIP_REASON))


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskLab]:
    prefix = Path(PREFIX)
    if not (prefix / "sbin" / "asterisk").exists():
        pytest.fail(f"CTI_TEST_ASTERISK={PREFIX}: no sbin/asterisk there")
    lab = AsteriskLab(prefix, tmp_path_factory.mktemp("asterisk"))
    lab.start()
    try:
        yield lab
    finally:
        lab.stop()
