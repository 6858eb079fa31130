"""The UDP peer of udp_probe.py and udp_link_probe.py: echo sockets on HOST:PORT for each PORT
given (IPv6 sockets when HOST is an IPv6 address). The reply to a datagram "who" is the sender's
address as "IP:PORT". Datagrams that start with "count" are counted and not answered, and the
reply to "report" is that count, which then starts again from 0. Any other datagram is sent back
unchanged. Prints "ready" once every socket is bound."""

import select
import socket
import sys

host = sys.argv[1]
sockets = []
for port in sys.argv[2:]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind((host, int(port)))
    sockets.append(sock)
counted = 0
print("ready", flush=True)
while True:
    readable, _, _ = select.select(sockets, [], [])
    for sock in readable:
        data, address = sock.recvfrom(65535)
        if data.startswith(b"count"):
            counted += 1
            continue
        if data == b"report":
            reply, counted = str(counted).encode(), 0
        elif data == b"who":
            reply = f"{address[0]}:{address[1]}".encode()
        else:
            reply = data
        sock.sendto(reply, address)
