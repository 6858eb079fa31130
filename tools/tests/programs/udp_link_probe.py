"""UDP sends across the link between netcon and the namespace, where the MTU is 1500: datagrams
larger than the link (fragmented and reassembled on the way), the don't-fragment options that
make them fail instead, and the same over IPv6. Prints one observation per line, so a run on the
kernel and a run through netcon compare line by line. Usage:

    udp_link_probe.py HOST HOST6 ECHO_PORT

HOST and HOST6 run udp_peer.py with an echo socket on ECHO_PORT; both are reached over the link.
"""

import errno
import os
import socket
import sys
import time

HOST, HOST6, PORT = sys.argv[1], sys.argv[2], int(sys.argv[3])
ECHO = (HOST, PORT)
ECHO6 = (HOST6, PORT)
MAPPED = ("::ffff:" + HOST, PORT)

# Linux's values, which the socket module does not export.
IP_MTU_DISCOVER = 10
IPV6_MTU_DISCOVER = 23
IPV6_DONTFRAG = 62
PMTUDISC_DONT, PMTUDISC_WANT, PMTUDISC_DO, PMTUDISC_PROBE = 0, 1, 2, 3

REPLY_TIMEOUT = 5.0


def show(label, value):
    print(f"{label}: {value}", flush=True)


def outcome(call):
    """Runs call and returns its result, or the errno name it failed with."""
    try:
        return call()
    except OSError as error:
        if error.errno is None:
            return type(error).__name__
        return errno.errorcode.get(error.errno, error.errno)


def datagram(family=socket.AF_INET):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.settimeout(REPLY_TIMEOUT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    return sock


def echo(sock, size, target, fill=b"e"):
    """Sends `size` bytes to the echo peer at `target` and returns what came back: the size and
    whether the content is intact, or the errno of the send or the receive."""
    payload = (fill * (size // len(fill) + 1))[:size]
    sent = outcome(lambda: sock.sendto(payload, target))
    if sent != size:
        return sent
    reply = outcome(lambda: sock.recv(65535))
    if not isinstance(reply, bytes):
        return reply
    return (len(reply), reply == payload)


def large_ipv4():
    sock = datagram()
    for size in [1472, 1473, 4000, 9000, 30000, 65507]:
        show(f"echo of {size} bytes", echo(sock, size, ECHO, bytes(range(251))))
    sock.close()


def dont_fragment_ipv4():
    sock = datagram()
    show("IP_MTU_DISCOVER default", sock.getsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER))
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DO)
    show("IP_PMTUDISC_DO echo of 1472 bytes", echo(sock, 1472, ECHO))
    show("IP_PMTUDISC_DO sendto of 1473 bytes", outcome(lambda: sock.sendto(b"d" * 1473, ECHO)))
    show("IP_PMTUDISC_DO sendto of 4000 bytes to loopback", outcome(lambda: sock.sendto(b"d" * 4000, ("127.0.0.1", 9))))
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_PROBE)
    show("IP_PMTUDISC_PROBE sendto of 4000 bytes", outcome(lambda: sock.sendto(b"d" * 4000, ECHO)))
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
    show("IP_PMTUDISC_DONT echo of 4000 bytes", echo(sock, 4000, ECHO))
    sock.close()

    connected = datagram()
    connected.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DO)
    connected.connect(ECHO)
    show("connected IP_PMTUDISC_DO send of 4000 bytes", outcome(lambda: connected.send(b"c" * 4000)))
    show("connected IP_PMTUDISC_DO send of 1000 bytes", outcome(lambda: connected.send(b"c" * 1000)))
    show("connected reply", len(outcome(lambda: connected.recv(65535))))
    connected.close()


def large_ipv6():
    sock = datagram(socket.AF_INET6)
    for size in [1452, 1453, 4000, 9000, 65000]:
        show(f"IPv6 echo of {size} bytes", echo(sock, size, ECHO6, bytes(range(253))))
    show("IPv4-mapped echo of 4000 bytes", echo(sock, 4000, MAPPED))
    sock.close()


def dont_fragment_ipv6():
    sock = datagram(socket.AF_INET6)
    show("IPV6_MTU_DISCOVER default", sock.getsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER))
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DO)
    show("IPV6_PMTUDISC_DO echo of 1452 bytes", echo(sock, 1452, ECHO6))
    show("IPV6_PMTUDISC_DO sendto of 1453 bytes", outcome(lambda: sock.sendto(b"d" * 1453, ECHO6)))
    show("IPV6_PMTUDISC_DO IPv4-mapped echo of 4000 bytes", echo(sock, 4000, MAPPED))
    sock.close()

    sock = datagram(socket.AF_INET6)
    sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 1)
    show("IPV6_DONTFRAG reads back", sock.getsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG))
    show("IPV6_DONTFRAG sendto of 4000 bytes", outcome(lambda: sock.sendto(b"d" * 4000, ECHO6)))
    sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DO)
    show("IP_PMTUDISC_DO IPv4-mapped sendto of 4000 bytes", outcome(lambda: sock.sendto(b"d" * 4000, MAPPED)))
    sock.close()


def many_large():
    """Several fragmented datagrams in flight at once, in both directions."""
    sock = datagram()
    payloads = [bytes([n]) * (3000 + n * 500) for n in range(8)]
    for payload in payloads:
        sock.sendto(payload, ECHO)
    replies = sorted(outcome(lambda: sock.recv(65535)) for _ in payloads)
    show("eight fragmented echoes", replies == sorted(payloads))
    sock.close()


def sent_before_close():
    """Datagrams a process sends right before it exits still leave, large and small."""
    for count, size in [(200, 100), (20, 9000)]:
        child = os.fork()
        if child == 0:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for _ in range(count):
                sock.sendto(b"count" + b"c" * (size - 5), ECHO)
            os._exit(0)
        os.waitpid(child, 0)
        time.sleep(1.0)
        sock = datagram()
        sock.sendto(b"report", ECHO)
        show(f"datagrams of {size} bytes that arrived of {count} sent before exit", outcome(lambda: int(sock.recv(100))))
        sock.close()


SCENARIOS = [
    large_ipv4,
    dont_fragment_ipv4,
    large_ipv6,
    dont_fragment_ipv6,
    many_large,
    sent_before_close,
]
for scenario in SCENARIOS:
    show("scenario", scenario.__name__)
    scenario()
show("done", True)
