"""The register map as plain Python: addresses, access and the key-loading sequence.

The one definition of the register addresses.  :mod:`hdl.csr` (the gateware) builds
the register file from these tables; software (the host driver, the virtual NIC, the
testbench) imports them from here, without Amaranth.  The counter names
(:data:`hdl.csr.COUNTERS`) are collected from the gateware's own lists and stay in
:mod:`hdl.csr`; they start at :data:`COUNTER_BASE`.

:data:`BOARD_REGISTERS` are the board top's own (``boards/board_registers.py``), in the
window :data:`BOARD_BASE` .. :data:`BOARD_END` - 1 that the engine leaves unmapped (it
reads 0 there): they exist only on a board, not in the engine alone or the virtual NIC.
"""

__all__ = ["REGISTERS", "COUNTER_BASE", "ID_VALUE", "key_register_writes",
           "BOARD_REGISTERS", "BOARD_BASE", "BOARD_END", "MDIO_BUSY", "MDIO_READ_DONE",
           "MDIO_NO_ANSWER", "MDIO_IGNORED", "mdio_command"]

ID_VALUE = 0x544F_4501  # "TOE", version 1

#: name -> (word address, access)
REGISTERS = {
    "id": (0x00, "r"),
    "params": (0x01, "r"),  # data_bytes | mtu << 16
    "mac_hi": (0x02, "rw"),  # upper 16 bits of our MAC
    "mac_lo": (0x03, "rw"),
    "ip_addr": (0x04, "rw"),
    "netmask": (0x05, "rw"),
    "gateway": (0x06, "rw"),
    "now_us": (0x07, "r"),  # time-base ticks since reset
    "control": (0x08, "w"),  # bit 0: send an ARP announcement
    # Secret keys, write-only (RFC 6528 s3, RFC 9293 MUST-9): word 0 holds key bytes
    # 0..3 little-endian; writing the last word loads the whole key.
    "isn_key0": (0x09, "w"),
    "isn_key1": (0x0A, "w"),
    "isn_key2": (0x0B, "w"),
    "isn_key3": (0x0C, "w"),  # loads the 16-byte SipHash key of the ISN generator
    "hash_key0": (0x0D, "w"),
    "hash_key1": (0x0E, "w"),
    "hash_key2": (0x0F, "w"),  # loads the 12-byte lookup hash key (empties the table)
    "tcp_params": (0x10, "r"),  # connections | listeners << 16
}

#: The address of the first counter (``hdl.csr.COUNTERS`` in address order).
COUNTER_BASE = 0x40

#: The board's register window: BOARD_BASE <= address < BOARD_END.
BOARD_BASE = 0x30
BOARD_END = 0x40

#: name -> (word address, access); the board top's registers (not the engine's).
BOARD_REGISTERS = {
    # Write: bits 15:0 data, 20:16 REGAD, 25:21 PHYAD, 26 write (1) or read (0); starts
    # an IEEE 802.3 clause 22 frame (ignored while one runs: MDIO_IGNORED).
    "mdio_cmd": (0x30, "w"),
    # Read: MDIO_* flags in bits 31:28, the last read's data in bits 15:0.
    "mdio_status": (0x31, "r"),
}

#: mdio_status bit 31: a frame is under way.
MDIO_BUSY = 1 << 31
#: mdio_status bit 30: a read has completed since the last accepted command.
MDIO_READ_DONE = 1 << 30
#: mdio_status bit 29: the last read's second TA bit was 1: no PHY answered.
MDIO_NO_ANSWER = 1 << 29
#: mdio_status bit 28: a command was written while busy and ignored (since the last
#: accepted command).
MDIO_IGNORED = 1 << 28


def mdio_command(phy: int, reg: int, *, write: bool = False, value: int = 0) -> int:
    """The ``mdio_cmd`` word of a read (or a write of ``value``) of ``reg`` of ``phy``."""
    if not (0 <= phy < 32 and 0 <= reg < 32 and 0 <= value < 1 << 16):
        raise ValueError("PHYAD and REGAD are 5 bits, the data 16")
    return value | reg << 16 | phy << 21 | int(write) << 26


def key_register_writes(isn_key: bytes, hash_key: bytes) -> list[tuple[int, int]]:
    """Register writes ``(address, value)`` that load the ISN key (16 bytes) and the
    lookup hash key (12 bytes), in the order the register file requires (the last word
    of each loads it)."""
    if len(isn_key) != 16 or len(hash_key) != 12:
        raise ValueError("the ISN key has 16 bytes and the hash key 12")
    writes = [(REGISTERS[f"isn_key{i}"][0], int.from_bytes(isn_key[4 * i : 4 * i + 4], "little"))
              for i in range(4)]
    writes += [(REGISTERS[f"hash_key{i}"][0],
                int.from_bytes(hash_key[4 * i : 4 * i + 4], "little")) for i in range(3)]
    return writes
