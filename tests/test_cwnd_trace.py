"""The congestion-window picture (sim/cwnd_trace.py): an SVG of the samples, a red tick
per sample where the retransmissions went up."""

import xml.etree.ElementTree as ET

from toe.sim.cwnd_trace import cwnd_svg

NS = "{http://www.w3.org/2000/svg}"


def test_svg_has_one_line_per_quantity_and_a_tick_per_retransmission():
    samples = [{"t": k * 0.01, "cwnd": 14600 * (k + 1), "ssthresh": 2**31 - 1,
                "flight": 1000 * k, "retransmits": k // 4, "srtt_us": 100} for k in range(10)]
    root = ET.fromstring(cwnd_svg({"samples": samples, "bytes": 4 << 20, "loss": 0.01}))
    lines = root.findall(f"{NS}polyline")
    assert [p.get("stroke") for p in lines] == ["#999", "#e08000", "#1f5fbf"]
    assert all(len(p.get("points").split()) == len(samples) for p in lines)
    ticks = [e for e in root.findall(f"{NS}line") if e.get("stroke") == "red"]
    assert len(ticks) == 2  # retransmits went 0 -> 1 at k = 4 and 1 -> 2 at k = 8
    # ssthresh "arbitrarily high" is drawn at the top edge, not off the picture.
    ys = [float(pt.split(",")[1]) for pt in lines[1].get("points").split()]
    assert min(ys) >= 0
