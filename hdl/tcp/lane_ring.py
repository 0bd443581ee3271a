"""Byte-addressed ring memory made of one block RAM per byte lane.

Per-connection TX and RX rings hold a byte stream whose positions come from sequence
numbers, so a segment's bytes start at any byte offset.  Splitting the memory into
``W`` one-byte-wide lanes (byte address ``a`` lives in lane ``a % W``, row ``a // W``)
lets one port read or write any ``W`` consecutive bytes in one cycle: each lane is
touched once, at row ``a // W`` or the row after, and a rotation puts the bytes in order.
"""

from amaranth.hdl import Array, Cat, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["LaneRing"]


class LaneRing(wiring.Component):
    """``depth`` bytes, one write and one read port of ``W`` bytes at any byte address.

    The memory is cut into aligned parts of ``part`` bytes (default: one part), one per
    connection: an access at ``conn * part + offset`` touches ``offset .. offset + W - 1``
    of that part, wrapping at its end, never the next part.

    Ports
    -----
    wr_addr, wr_data, wr_en : In
        Byte ``i`` of ``wr_data`` (lane ``i``) is written to address ``wr_addr + i`` if
        bit ``i`` of ``wr_en`` is set.
    rd_addr, rd_en : In; rd_data : Out
        One cycle after ``rd_en``, byte ``i`` of ``rd_data`` holds address
        ``rd_addr + i``.  ``rd_data`` holds its value while ``rd_en`` is low.
    """

    def __init__(self, data_bytes: int, depth: int, part: int | None = None):
        if data_bytes & (data_bytes - 1):
            raise ValueError(f"data_bytes must be a power of two, not {data_bytes}")
        if depth & (depth - 1) or depth < data_bytes:
            raise ValueError(f"depth must be a power of two >= data_bytes, not {depth}")
        part = depth if part is None else part
        if part & (part - 1) or not data_bytes <= part <= depth:
            raise ValueError(f"part must be a power of two, data_bytes..depth, not {part}")
        self._w = data_bytes
        self.depth = depth
        self.part = part
        self.addr_bits = (depth - 1).bit_length()
        self.lanes = [memory.MemoryData(shape=8, depth=depth // data_bytes, init=[])
                      for _ in range(data_bytes)]
        super().__init__({
            "wr_addr": In(self.addr_bits),
            "wr_data": In(8 * data_bytes),
            "wr_en": In(data_bytes),
            "rd_addr": In(self.addr_bits),
            "rd_en": In(1),
            "rd_data": Out(8 * data_bytes),
        })

    def read_by(self, m, block) -> None:
        """Give ``block``'s ``rd_addr``/``rd_en``/``rd_data`` this ring's read port."""
        m.d.comb += [self.rd_addr.eq(block.rd_addr), self.rd_en.eq(block.rd_en),
                     block.rd_data.eq(self.rd_data)]

    def written_by(self, m, block) -> None:
        """Give ``block``'s ``wr_addr``/``wr_data``/``wr_en`` this ring's write port."""
        m.d.comb += [self.wr_addr.eq(block.wr_addr), self.wr_data.eq(block.wr_data),
                     self.wr_en.eq(block.wr_en)]

    def elaborate(self, platform):
        m = Module()
        w = self._w
        lane_bits = (w - 1).bit_length()
        part_row_bits = (self.part // w - 1).bit_length()

        def next_row(row, carry):
            """``row + carry``, wrapping inside the row's part."""
            inner = (row[:part_row_bits] + carry)[:part_row_bits]
            return Cat(inner, row[part_row_bits:]) if part_row_bits else row

        wr_lane = self.wr_addr[:lane_bits]
        wr_row = self.wr_addr[lane_bits:]
        rd_lane = self.rd_addr[:lane_bits]
        rd_row = self.rd_addr[lane_bits:]
        rd_lane_q = Signal(max(1, lane_bits))

        in_bytes = Array(self.wr_data[8 * i : 8 * i + 8] for i in range(w))
        in_en = Array(self.wr_en[i] for i in range(w))
        out_bytes = []
        for lane, lane_data in enumerate(self.lanes):
            m.submodules[f"lane{lane}"] = mem = memory.Memory(data=lane_data)
            wp = mem.write_port()
            rp = mem.read_port()
            if w == 1:
                m.d.comb += [
                    wp.addr.eq(wr_row), wp.data.eq(self.wr_data), wp.en.eq(self.wr_en),
                    rp.addr.eq(rd_row), rp.en.eq(self.rd_en),
                ]
            else:
                # The byte of the access that lands in this lane, and its row.
                index = (lane - wr_lane)[:lane_bits]
                m.d.comb += [
                    wp.addr.eq(next_row(wr_row, lane < wr_lane)),
                    wp.data.eq(in_bytes[index]),
                    wp.en.eq(in_en[index]),
                    rp.addr.eq(next_row(rd_row, lane < rd_lane)),
                    rp.en.eq(self.rd_en),
                ]
            out_bytes.append(rp.data)
        if w == 1:
            m.d.comb += self.rd_data.eq(out_bytes[0])
        else:
            with m.If(self.rd_en):
                m.d.sync += rd_lane_q.eq(rd_lane)
            lanes = Array(out_bytes)
            m.d.comb += self.rd_data.eq(
                Cat(lanes[(rd_lane_q + i)[:lane_bits]] for i in range(w)))
        return m
