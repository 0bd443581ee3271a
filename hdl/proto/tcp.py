"""RFC 9293 s3.1 TCP header facts and the option kinds the engine understands.

Offsets are from the start of the TCP header.  Options: RFC 9293 s3.2 (EOL, NOP, MSS),
RFC 7323 (window scale, timestamps), RFC 2018 (SACK-permitted, SACK).
"""

MIN_HEADER_BYTES = 20
MAX_HEADER_BYTES = 60
MAX_OPTION_BYTES = 40
SPORT, DPORT, SEQ, ACK, DATA_OFFSET, FLAGS, WINDOW, CHECKSUM, URGENT = (
    0, 2, 4, 8, 12, 13, 14, 16, 18,
)

# Flag bits of the byte at offset 13 (ECE and CWR: RFC 3168 s6.1).
FIN, SYN, RST, PSH, ACK_FLAG, URG, ECE, CWR = (1 << i for i in range(8))
#: One letter per flag bit, bit i -> letter i (the letters of scapy and tcpdump).
FLAG_LETTERS = "FSRPAUEC"
#: The flags' names in the order they are written, SYN first (``"SYN+ACK"``, ``"FIN+ACK"``).
FLAG_NAMES = ((SYN, "SYN"), (FIN, "FIN"), (RST, "RST"), (PSH, "PSH"), (ACK_FLAG, "ACK"),
              (URG, "URG"), (ECE, "ECE"), (CWR, "CWR"))


def flag_letters(value: int) -> str:
    """The flag bits of ``value`` as letters in the order FSRPAUEC (``"SA"``, ``"FA"``)."""
    return "".join(letter for i, letter in enumerate(FLAG_LETTERS) if value >> i & 1)


def flag_bits(letters: str) -> int:
    """The flag bits that ``letters`` name (``"SA"`` -> ``SYN | ACK_FLAG``)."""
    bits = 0
    for letter in letters:
        if letter not in FLAG_LETTERS:
            raise ValueError(f"unknown TCP flag letter {letter!r} (one of {FLAG_LETTERS})")
        bits |= 1 << FLAG_LETTERS.index(letter)
    return bits


def flag_names(value: int, sep: str = "+") -> str:
    """The flag bits of ``value`` by name, SYN first: ``"SYN+ACK"``; ``""`` for none."""
    return sep.join(name for bit, name in FLAG_NAMES if value & bit)


# Sequence space (RFC 9293 s3.4), for Python integers; the gateware's comparisons are
# hdl/tcp/seq.py.  Sequence numbers live modulo 2**32, and ``a`` is before ``b`` when
# ``b`` is 1 .. 2**31 - 1 ahead of it: two numbers exactly 2**31 apart are neither
# before nor after each other here (the gateware's seq_lt, a sign bit, says both are).
SEQ_MOD = 1 << 32


def seq_diff(a: int, b: int) -> int:
    """``a - b`` modulo 2**32 (0 .. 2**32 - 1), as hdl/tcp/seq.py ``seq_diff``."""
    return (a - b) % SEQ_MOD


def seq_before(a: int, b: int) -> bool:
    """``a < b`` in sequence space."""
    return 0 < seq_diff(b, a) < 1 << 31


def seq_before_eq(a: int, b: int) -> bool:
    """``a =< b`` in sequence space."""
    return seq_diff(b, a) < 1 << 31


OPT_EOL = 0
OPT_NOP = 1
OPT_MSS = 2  # length 4
OPT_WSCALE = 3  # length 3, RFC 7323 s2
OPT_SACK_PERMITTED = 4  # length 2, RFC 2018 s2
OPT_SACK = 5  # length 2 + 8*n, n = 1..4, RFC 2018 s3
OPT_TIMESTAMPS = 8  # length 10, RFC 7323 s3

MAX_WSCALE = 14  # RFC 7323 s2.3: larger shifts are used as 14
MAX_SACK_BLOCKS = 4
DEFAULT_MSS = 536  # RFC 9293 MUST-15

#: Option words (4 bytes each) as the engine sends them, NOP-padded like Linux and
#: FreeBSD so every option starts word-aligned.
MSS_WORD = 1  # kind 2, length 4, MSS
TS_WORDS = 3  # NOP NOP, kind 8, length 10, TSval, TSecr
TS_OPTION_BYTES = 4 * TS_WORDS
WSCALE_WORD = 1  # NOP, kind 3, length 3, shift
SACK_PERMITTED_WORD = 1  # NOP NOP, kind 4, length 2
SACK_HEADER_WORD = 1  # NOP NOP, kind 5, length 2 + 8n (then 2 words per block)


def sack_blocks_that_fit(ts_on: bool) -> int:
    """SACK blocks that fit beside the other options of a non-SYN segment: 3 with
    timestamps, 4 without (RFC 2018 s3)."""
    return 3 if ts_on else MAX_SACK_BLOCKS


def option_bytes(*, syn_options=False, mss=0, wscale_on=False, wscale=0,
                 sack_permitted=False, ts_on=False, ts_val=0, ts_ecr=0,
                 sack=()) -> bytes:
    """The option bytes of a segment the engine sends (the reference for
    :class:`hdl.tcp.transmitter.TcpTransmitter`): a SYN or SYN-ACK carries MSS, then
    timestamps, window scale and SACK-permitted as asked; any other segment timestamps,
    then the SACK blocks ``sack`` (pairs ``(left, right)``; extra blocks that do not
    fit are left out)."""
    out = b""
    if syn_options:
        out += bytes([OPT_MSS, 4]) + mss.to_bytes(2, "big")
    if ts_on:
        out += bytes([OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10])
        out += ts_val.to_bytes(4, "big") + ts_ecr.to_bytes(4, "big")
    if syn_options:
        if wscale_on:
            out += bytes([OPT_NOP, OPT_WSCALE, 3, wscale])
        if sack_permitted:
            out += bytes([OPT_NOP, OPT_NOP, OPT_SACK_PERMITTED, 2])
    elif sack:
        blocks = list(sack)[: sack_blocks_that_fit(ts_on)]
        out += bytes([OPT_NOP, OPT_NOP, OPT_SACK, 2 + 8 * len(blocks)])
        for left, right in blocks:
            out += left.to_bytes(4, "big") + right.to_bytes(4, "big")
    assert len(out) % 4 == 0 and len(out) <= MAX_OPTION_BYTES
    return out
