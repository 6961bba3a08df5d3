#!/usr/bin/env python3
"""ICMP echo (what ping does) without the ping package: echo.py HOST [COUNT] [TIMEOUT_S].

Sends COUNT echo requests over a raw socket (root) and prints "N received" with the replies from HOST that carry
our identifier; exit 0 when every request was answered, 1 otherwise.
"""
import os
import select
import socket
import struct
import sys
import time


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def main() -> int:
    host = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    timeout = float(sys.argv[3]) if len(sys.argv) > 3 else 2.0
    ident = os.getpid() & 0xFFFF
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    received = 0
    for seq in range(1, count + 1):
        payload = b'cstp-netns-echo'
        header = struct.pack('!BBHHH', 8, 0, 0, ident, seq)
        packet = struct.pack('!BBHHH', 8, 0, checksum(header + payload), ident, seq) + payload
        sock.sendto(packet, (host, 0))
        deadline = time.time() + timeout
        while True:
            left = deadline - time.time()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                break
            data, addr = sock.recvfrom(2048)
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack('!BBHHH', data[ihl:ihl + 8])
            if addr[0] == host and kind == 0 and rid == ident and rseq == seq:
                received += 1
                break
    print('%d received' % received)
    return 0 if received == count else 1


if __name__ == '__main__':
    sys.exit(main())
