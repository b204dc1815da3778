"""Tokenizer facts shared by the offline worlds: CLIP's byte-level BPE alphabet."""

from __future__ import annotations

from functools import cache


@cache
def clip_byte_chars() -> tuple[str, ...]:
    """CLIP's (GPT-2's) reversible byte -> printable-unicode table: the 256 stand-in characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return tuple(chr(c) for c in cs)
