"""The virtual NIC's socket messages have one definition: ``host.socket_transport.Message``.

``sim/vnic.py`` writes them into the header the native NIC is built with
(``VNIC_MESSAGES``); ``sim/native/vnic.cpp`` builds its ``Message`` enum from that
macro and spells no value itself.  These tests read the sources and the generated header
(no build, no root); with a C++ compiler they also compile the enum as vnic.cpp has it.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from toe.host.socket_transport import STATS_FIELDS, Message
from toe.sim.vnic import VNIC_CONFIG, _header

SOURCE = Path(__file__).resolve().parent.parent / "sim" / "native" / "vnic.cpp"
NAMES = "|".join(m.name for m in Message)


def _macro(header: str) -> list[tuple[str, int]]:
    """The (name, value) entries of ``VNIC_MESSAGES`` in a generated header."""
    match = re.search(r"#define VNIC_MESSAGES\(X\)((?:.*\\\n)*.*)", header)
    assert match, "the header defines no VNIC_MESSAGES"
    return [(name, int(value, 0))
            for name, value in re.findall(r"X\((\w+), (0x[0-9a-fA-F]+)\)", match[1])]


def _enum_block(source: str) -> str:
    match = re.search(r"enum Message : uint8_t \{.*?\};", source, re.S)
    assert match, "vnic.cpp has no Message enum"
    return match[0]


def test_header_carries_the_python_table():
    header = _header(VNIC_CONFIG)
    assert _macro(header) == [(m.name, m.value) for m in Message]


def test_values_are_distinct_bytes():
    values = [m.value for m in Message]
    assert len(set(values)) == len(values) and all(0 < v < 256 for v in values)


def test_vnic_cpp_takes_the_enum_from_the_macro():
    source = SOURCE.read_text()
    block = _enum_block(source)
    assert "VNIC_MESSAGES(" in block
    # No message type written out by hand, anywhere in the source.
    assert not re.search(rf"\b({NAMES})\s*=\s*(0x)?[0-9]", source)
    assert source.count("enum Message") == 1


def test_vnic_cpp_uses_only_known_messages():
    """Every type vnic.cpp sends or dispatches on is in the table."""
    source = SOURCE.read_text()
    sent = set(re.findall(r"\bsend\((\w+),", source)) - {"type"}
    dispatch = re.search(r"switch \(type\) \{(.*?)\n\}", source, re.S)  # to the function's end
    assert dispatch, "no dispatch on the message type in vnic.cpp"
    handled = set(re.findall(r"case (\w+):", dispatch[1]))
    known = {m.name for m in Message}
    assert sent and sent <= known, sent - known
    assert handled and handled <= known, handled - known


def test_stats_answer_has_every_field():
    """``send_stats`` puts one u64 per name of :data:`STATS_FIELDS`, in a braced list."""
    source = SOURCE.read_text()
    body = re.search(r"void VirtualNic::send_stats\(\) \{(.*?)\n\}", source, re.S)[1]
    values = re.search(r"for \(uint64_t value : \{(.*?)\}\)", body, re.S)[1]
    depth, count = 0, 1
    for ch in values:
        depth += ch in "([{"
        depth -= ch in ")]}"
        count += ch == "," and depth == 0
    assert count == len(STATS_FIELDS)


@pytest.mark.skipif(shutil.which("c++") is None, reason="no C++ compiler")
def test_the_cpp_enum_has_the_python_values(tmp_path):
    unit = tmp_path / "messages.cpp"
    checks = "\n".join(f"static_assert({m.name} == {m.value}, \"{m.name}\");" for m in Message)
    unit.write_text("#include <cstdint>\n" + _header(VNIC_CONFIG) + "\n"
                    + _enum_block(SOURCE.read_text()) + "\n" + checks + "\n")
    result = subprocess.run(["c++", "-std=c++17", "-fsyntax-only", str(unit)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
