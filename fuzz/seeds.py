#!/usr/bin/env python3
"""Writes the committed seed corpus of the wire-format targets
(tickets_request, users_request, scalars): a few valid requests each.
The structured targets (page_token, jwt, api_key) start from the short
inputs committed beside them. Run from fuzz/: python3 seeds.py"""
import os
import struct

def varint(n):
    n &= (1 << 64) - 1
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])

def tag(field, wire):
    return varint(field << 3 | wire)

def s(field, text):
    data = text.encode() if isinstance(text, str) else text
    return tag(field, 2) + varint(len(data)) + data

def i(field, n):
    return tag(field, 0) + varint(n)

def ts(field, seconds, nanos=0):
    return s(field, i(1, seconds) + (i(2, nanos) if nanos else b""))

def packed(field, values):
    return s(field, b"".join(varint(v) for v in values))

ID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
RID = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"

def write(target, name, data):
    d = os.path.join("corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

ticket = s(2, "Printer on fire") + s(3, "Third floor.") + i(4, 1) + i(5, 3) + s(6, ID) + s(8, "hardware") + s(8, "urgent")
write("tickets_request", "create", b"\x00" + s(1, ticket) + s(2, RID))
write("tickets_request", "update", b"\x01" + s(1, s(1, ID) + s(2, "New title") + i(4, 4) + s(8, "x") + s(12, '"00ff"'))
      + s(2, s(1, "title") + s(1, "status") + s(1, "tags")))
write("tickets_request", "list", b"\x02" + i(1, 20) + s(3, ID) + packed(4, [1, 2]) + i(5, 2) + s(6, "billing")
      + ts(7, 1_700_000_000) + ts(8, 1_700_086_400, 5000) + s(9, "update_time desc"))
write("tickets_request", "export", b"\x03" + packed(2, [4, 5]) + s(4, "vip") + i(7, 1))
write("tickets_request", "stats", b"\x04" + ts(1, 1_700_000_000) + ts(2, 1_702_000_000) + s(4, "vip") + i(5, 4) + i(6, 10))

user = s(2, " Ann@Example.COM ") + s(3, "Ann Agent") + i(4, 2)
write("users_request", "create", b"\x00" + s(1, user) + s(2, RID))
write("users_request", "update", b"\x01" + s(1, s(1, ID) + user + i(5, 1) + s(9, '"ab"'))
      + s(2, s(1, "email") + s(1, "role") + s(1, "active") + s(1, "display_name")))
write("users_request", "list", b"\x02" + i(1, 100) + i(3, 1) + i(4, 0) + s(5, "ann@") + i(6, 1))
write("users_request", "new_key", b"\x03" + s(1, s(2, "ci deploys") + s(3, ID) + s(4, "tickets:read") + s(4, "stats:read")
      + ts(7, 1_900_000_000)))

def scalar(name, text, number=0, seconds=0, nanos=0):
    write("scalars", name, struct.pack("<iqi", number, seconds, nanos) + text.encode())

scalar("timeout", "250m", 50, 1_700_000_000, 123_456_789)
scalar("bearer", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", -1, -62_135_596_800)
scalar("order_by", "create_time DESC", 600, 253_402_300_799, 999_999_999)
scalar("operation", "operations/" + ID)
scalar("request_id", "req-42:a.b_c")
scalar("scope", "tickets:write")
