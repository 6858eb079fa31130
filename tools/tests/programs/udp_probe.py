"""UDP socket behaviours, printed as one observation per line so that a run over the kernel
and a run through netcon can be compared line by line. Usage:

    udp_probe.py HOST ECHO_PORT OTHER_PORT CLOSED_PORT

HOST runs udp_peer.py with echo sockets on ECHO_PORT and OTHER_PORT; nothing listens on
CLOSED_PORT. Lines name facts, not addresses or port numbers, which differ between the runs.
"""

import ctypes
import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import sys
import termios
import time

HOST = sys.argv[1]
ECHO = (HOST, int(sys.argv[2]))
OTHER = (HOST, int(sys.argv[3]))
CLOSED = (HOST, int(sys.argv[4]))

# Linux's IP_MTU_DISCOVER values, which the socket module does not export.
IP_MTU_DISCOVER = 10
IP_PMTUDISC_DO = 2

# How long a reply may take, and how long an ICMP error may take to come back.
REPLY_TIMEOUT = 3.0
ICMP_WAIT = 0.5


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


def udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(REPLY_TIMEOUT)
    return sock


def identity():
    sock = udp()
    show("SO_TYPE is SOCK_DGRAM", sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_DGRAM)
    show("SO_PROTOCOL is UDP", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PROTOCOL) == socket.IPPROTO_UDP)
    show("SO_DOMAIN is AF_INET", sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) == socket.AF_INET)
    show("unbound getsockname", sock.getsockname())
    show("unbound getpeername", outcome(sock.getpeername))
    show("unbound send without address", outcome(lambda: sock.send(b"x")))
    show("TCP option on UDP", outcome(lambda: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)))
    show("listen on UDP", outcome(lambda: sock.listen(1)))
    show("shutdown unconnected", outcome(lambda: sock.shutdown(socket.SHUT_RDWR)))
    sock.close()


def implicit_bind():
    sock = udp()
    sock.sendto(b"who", ECHO)
    local = sock.getsockname()
    show("first sendto binds a port", local[1] != 0)
    show("first sendto keeps the wildcard address", local[0] == "0.0.0.0")
    reply, source = sock.recvfrom(100)
    show("recvfrom source is the peer", source == ECHO)
    seen_port = int(reply.decode().rsplit(":", 1)[1])
    show("peer saw the bound port", seen_port == local[1])
    sock.close()


def boundaries():
    sock = udp()
    sizes = [0, 1, 100, 1000, 1472]
    for size in sizes:
        sock.sendto(bytes([size % 251]) * size, ECHO)
    received = [len(sock.recv(65535)) for _ in sizes]
    show("datagram sizes kept", received == sizes)

    sock.sendto(b"a" * 1000, ECHO)
    sock.sendto(b"b" * 10, ECHO)
    show("short read takes the head", sock.recv(100) == b"a" * 100)
    show("rest of a short read is discarded", sock.recv(2000) == b"b" * 10)

    sock.sendto(b"c" * 1000, ECHO)
    data, _, flags, source = sock.recvmsg(100)
    show("recvmsg truncates", len(data))
    show("recvmsg sets MSG_TRUNC", bool(flags & socket.MSG_TRUNC))
    show("recvmsg source", source == ECHO)

    sock.sendto(b"d" * 1000, ECHO)
    buffer = bytearray(10)
    show("recv with MSG_TRUNC returns the full length", sock.recv_into(buffer, 10, socket.MSG_TRUNC))

    sock.sendto(b"peek", ECHO)
    peeked = sock.recv(100, socket.MSG_PEEK)
    show("MSG_PEEK leaves the datagram", peeked == sock.recv(100) == b"peek")

    show("sendto of 65508 bytes", outcome(lambda: sock.sendto(b"x" * 65508, ECHO)))
    show("sendto to port 0", outcome(lambda: sock.sendto(b"x", (HOST, 0))))
    sock.close()


def scatter_gather():
    sock = udp()
    show("sendmsg with an address", sock.sendmsg([b"sc", b"at", b"ter"], [], 0, ECHO))
    data, ancillary, flags, source = sock.recvmsg(100)
    show("recvmsg gathers", data)
    show("recvmsg has no ancillary data", ancillary == [] and flags == 0)
    show("recvmsg source", source == ECHO)
    buffers = [bytearray(3), bytearray(10)]
    sock.sendto(b"scattered", ECHO)
    count, _, _, _ = sock.recvmsg_into(buffers)
    show("recvmsg_into scatters", (count, bytes(buffers[0]), bytes(buffers[1][: count - 3])))
    sock.close()


def connected():
    sock = udp()
    sock.connect(ECHO)
    local = sock.getsockname()
    show("connect binds a port", local[1] != 0)
    show("connect fixes the local address", local[0] != "0.0.0.0")
    show("getpeername after connect", sock.getpeername() == ECHO)
    show("send on connected", sock.send(b"hello"))
    show("recv on connected", sock.recv(100))
    fd = sock.fileno()
    show("write on connected", os.write(fd, b"written"))
    # The timeout makes the fd non-blocking, so wait for the reply before reading it.
    select.select([fd], [], [], REPLY_TIMEOUT)
    show("read on connected", os.read(fd, 100))
    show("sendmsg without address", sock.sendmsg([b"msg"]))
    show("recvmsg from peer", sock.recvmsg(100)[3] == ECHO)
    show("sendto another address on connected", sock.sendto(b"who", OTHER))
    sock.settimeout(0.5)
    show("reply from another address is filtered", outcome(lambda: sock.recv(100)))
    sock.settimeout(REPLY_TIMEOUT)

    copy = sock.dup()
    copy.send(b"from dup")
    show("dup sends to the peer", sock.recv(100))
    copy.close()

    libc = ctypes.CDLL(None, use_errno=True)
    unspec = ctypes.create_string_buffer(16)  # sa_family 0 = AF_UNSPEC
    result = libc.connect(fd, unspec, 16)
    show("connect AF_UNSPEC", result if result == 0 else errno.errorcode[ctypes.get_errno()])
    show("getpeername after disconnect", outcome(sock.getpeername))
    show("local address after disconnect", sock.getsockname()[0])
    show("send after disconnect", outcome(lambda: sock.send(b"x")))
    sock.sendto(b"again", ECHO)
    show("sendto after disconnect", sock.recvfrom(100) == (b"again", ECHO))
    sock.close()


def port_unreachable():
    sock = udp()
    sock.connect(CLOSED)
    show("first send to a closed port", sock.send(b"1"))
    time.sleep(ICMP_WAIT)
    show("send after port unreachable", outcome(lambda: sock.send(b"2")))
    time.sleep(ICMP_WAIT)
    sock.setblocking(False)
    show("recv after port unreachable", outcome(lambda: sock.recv(100)))
    show("recv once the error is reported", outcome(lambda: sock.recv(100)))
    sock.send(b"3")
    time.sleep(ICMP_WAIT)
    show("SO_ERROR after port unreachable", errno.errorcode.get(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR), 0))
    show("SO_ERROR once read", sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
    sock.close()

    unconnected = udp()
    unconnected.sendto(b"1", CLOSED)
    time.sleep(ICMP_WAIT)
    unconnected.setblocking(False)
    show("unconnected ignores port unreachable", outcome(lambda: unconnected.recv(100)))
    unconnected.close()


def nonblocking():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    sock.bind(("0.0.0.0", 0))
    show("recv with nothing queued", outcome(lambda: sock.recv(100)))
    show("recv MSG_DONTWAIT", outcome(lambda: socket.socket.recv(sock, 100, socket.MSG_DONTWAIT)))
    poller = select.epoll()
    poller.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
    show("epoll before data", sorted(event for _, event in poller.poll(0)))
    sock.sendto(b"ping", ECHO)
    deadline = time.monotonic() + REPLY_TIMEOUT
    events = 0
    while not events & select.EPOLLIN and time.monotonic() < deadline:
        for _, event in poller.poll(REPLY_TIMEOUT):
            events |= event
    show("epoll after a datagram arrives", bool(events & select.EPOLLIN))
    show("recv after EPOLLIN", sock.recv(100))
    show("epoll after reading", sorted(event for _, event in poller.poll(0)))
    poll = select.poll()
    poll.register(sock.fileno(), select.POLLIN)
    show("poll with nothing queued", poll.poll(0))
    sock.sendto(b"ping", ECHO)
    show("poll after a datagram arrives", [event for _, event in poll.poll(REPLY_TIMEOUT * 1000)])
    sock.recv(100)
    poller.close()
    sock.close()


def explicit_bind():
    first = udp()
    first.bind(("0.0.0.0", 0))
    port = first.getsockname()[1]
    show("bind to port 0 picks one", port != 0)
    second = udp()
    show("bind to a taken port", outcome(lambda: second.bind(("0.0.0.0", port))))
    show("bind twice", outcome(lambda: first.bind(("0.0.0.0", 0))))
    show("bind to a foreign address", outcome(lambda: second.bind(("192.0.2.1", 0))))
    second.close()
    first.close()

    shared = [udp(), udp()]
    for sock in shared:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    shared[0].bind(("0.0.0.0", 0))
    port = shared[0].getsockname()[1]
    show("SO_REUSEADDR shares a port", outcome(lambda: shared[1].bind(("0.0.0.0", port))))
    for sock in shared:
        sock.close()

    receiver = udp()
    receiver.bind(("0.0.0.0", 0))
    sender = udp()
    sender.sendto(b"to a bound socket", ("127.0.0.1", receiver.getsockname()[1]))
    data, source = receiver.recvfrom(100)
    show("bound socket receives over loopback", data)
    show("loopback source", source[0])
    sender.close()
    receiver.close()


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(Iovec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", Msghdr), ("len", ctypes.c_uint)]


# x86_64 system call numbers; libuv 1.44 sends and receives batches through syscall().
SYS_RECVMMSG = 299
SYS_SENDMMSG = 307
# Linux's MSG_WAITFORONE, which the socket module does not export.
MSG_WAITFORONE = 0x10000


def message_array(payloads):
    """Builds an mmsghdr array with one iovec per payload (buffers kept alive by the caller)."""
    messages = (Mmsghdr * len(payloads))()
    buffers = [ctypes.create_string_buffer(payload, len(payload)) for payload in payloads]
    iovecs = [Iovec(ctypes.cast(buffer, ctypes.c_void_p), len(payload)) for buffer, payload in zip(buffers, payloads)]
    for message, iov in zip(messages, iovecs):
        message.hdr.iov = ctypes.pointer(iov)
        message.hdr.iovlen = 1
    return messages, buffers, iovecs


def multiple_messages():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    sock = udp()
    sock.connect(ECHO)
    fd = sock.fileno()
    messages, keep, _ = message_array([b"one", b"two", b"three"])
    show("sendmmsg", libc.sendmmsg(fd, messages, 3, 0))
    show("sendmmsg lengths", [message.len for message in messages])
    show("sendmmsg with no messages", libc.sendmmsg(fd, None, 0, 0))
    select.select([fd], [], [], REPLY_TIMEOUT)
    time.sleep(0.2)
    received, keep_in, _ = message_array([b"\0" * 16] * 4)
    count = libc.recvmmsg(fd, received, 4, MSG_WAITFORONE, None)
    show("recvmmsg with MSG_WAITFORONE", count)
    show("recvmmsg payloads", [keep_in[i].raw[: received[i].len] for i in range(max(count, 0))])

    messages, keep, _ = message_array([b"four", b"five"])
    show("syscall sendmmsg", libc.syscall(SYS_SENDMMSG, fd, messages, 2, 0))
    select.select([fd], [], [], REPLY_TIMEOUT)
    time.sleep(0.2)
    received, keep_in, _ = message_array([b"\0" * 16] * 2)
    count = libc.syscall(SYS_RECVMMSG, fd, received, 2, socket.MSG_DONTWAIT, None)
    show("syscall recvmmsg", count)
    show("syscall recvmmsg payloads", [keep_in[i].raw[: received[i].len] for i in range(max(count, 0))])
    sock.setblocking(False)
    show("recv after the batches", outcome(lambda: sock.recv(100)))
    empty, _, _ = message_array([b"\0" * 16])
    result = libc.recvmmsg(fd, empty, 1, socket.MSG_DONTWAIT, None)
    show("recvmmsg with nothing queued", result if result >= 0 else errno.errorcode[ctypes.get_errno()])
    sock.close()


def forked():
    sock = udp()
    sock.bind(("0.0.0.0", 0))
    child = os.fork()
    if child == 0:
        try:
            sock.sendto(b"from the child", ECHO)
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    show("parent receives the reply to the child", sock.recvfrom(100) == (b"from the child", ECHO))
    sock.close()


EXEC_CHILD = """
import os, select, sys
fd = int(sys.argv[1])
os.write(fd, b"from the exec child")
select.select([fd], [], [], 3.0)
print(os.read(fd, 100) == b"from the exec child", flush=True)
"""


def exec_inherited():
    sock = udp()
    sock.connect(ECHO)
    child = subprocess.run(
        [sys.executable, "-c", EXEC_CHILD, str(sock.fileno())],
        pass_fds=[sock.fileno()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    show("exec child reads the reply with read()", child.stdout.strip())
    show("exec child status", child.returncode)
    sock.close()


def passed_in_message():
    sock = udp()
    sock.bind(("0.0.0.0", 0))
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    socket.send_fds(left, [b"fd"], [sock.fileno()])
    _, fds, _, _ = socket.recv_fds(right, 10, 1)
    passed = socket.socket(fileno=fds[0])
    passed.settimeout(REPLY_TIMEOUT)
    passed.sendto(b"through a passed fd", ECHO)
    show("passed fd receives the reply", passed.recvfrom(100) == (b"through a passed fd", ECHO))
    for item in (passed, sock, left, right):
        item.close()


def fcntl_copy():
    sock = udp()
    sock.connect(ECHO)
    copy = fcntl.fcntl(sock.fileno(), fcntl.F_DUPFD, 100)
    show("F_DUPFD copy at or above 100", copy >= 100)
    os.write(copy, b"through an F_DUPFD copy")
    sock.settimeout(REPLY_TIMEOUT)
    show("reply to the copy", sock.recv(100))
    os.close(copy)
    sock.close()


def disconnect_keeps_bound_address():
    probe = udp()
    probe.connect(ECHO)
    own_address = probe.getsockname()[0]
    probe.close()
    sock = udp()
    sock.bind((own_address, 0))
    sock.connect(ECHO)
    libc = ctypes.CDLL(None, use_errno=True)
    unspec = ctypes.create_string_buffer(16)  # sa_family 0 = AF_UNSPEC
    show("connect AF_UNSPEC after bind", libc.connect(sock.fileno(), unspec, 16))
    show("bound address kept after disconnect", sock.getsockname()[0] == own_address)
    sock.close()


def unusual_connect_targets():
    sock = udp()
    show("connect to port 0", outcome(lambda: sock.connect((HOST, 0))))
    show("getpeername after connect to port 0", outcome(sock.getpeername))
    show("send after connect to port 0", outcome(lambda: sock.send(b"x")))
    sock.close()
    sock = udp()
    show("connect to 0.0.0.0", outcome(lambda: sock.connect(("0.0.0.0", ECHO[1]))))
    show("peer of 0.0.0.0 is loopback", sock.getpeername() == ("127.0.0.1", ECHO[1]))
    sock.close()


def unreachable():
    sock = udp()
    show("sendto outside the subnet", outcome(lambda: sock.sendto(b"x", ("192.0.2.1", 9))))
    show("connect outside the subnet", outcome(lambda: sock.connect(("192.0.2.1", 9))))
    sock.close()
    sock6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    show("IPv6 sendto without a route", outcome(lambda: sock6.sendto(b"x", ("fd99::1", 9))))
    show("IPv6 connect without a route", outcome(lambda: sock6.connect(("fd99::1", 9))))
    show("IPv4-mapped sendto outside the subnet", outcome(lambda: sock6.sendto(b"x", ("::ffff:192.0.2.1", 9))))
    sock6.close()


# The subnet both the namespace and netcon are on.
SUBNET_BROADCAST = "10.77.0.255"


def broadcast():
    sock = udp()
    show("sendto subnet broadcast", outcome(lambda: sock.sendto(b"x", (SUBNET_BROADCAST, 9))))
    show("sendto 255.255.255.255", outcome(lambda: sock.sendto(b"x", ("255.255.255.255", 9))))
    show("connect to subnet broadcast", outcome(lambda: sock.connect((SUBNET_BROADCAST, 9))))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    show("SO_BROADCAST reads back", sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST))
    show("sendto subnet broadcast with SO_BROADCAST", outcome(lambda: sock.sendto(b"x", (SUBNET_BROADCAST, 9))))
    show("sendto 255.255.255.255 with SO_BROADCAST", outcome(lambda: sock.sendto(b"x", ("255.255.255.255", 9))))
    show("connect to subnet broadcast with SO_BROADCAST", outcome(lambda: sock.connect((SUBNET_BROADCAST, 9))))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 0)
    show("sendto subnet broadcast after clearing SO_BROADCAST", outcome(lambda: sock.sendto(b"x", (SUBNET_BROADCAST, 9))))
    sock.close()


def queued_bytes():
    sock = udp()
    sock.connect(ECHO)
    fd = sock.fileno()
    count = lambda: struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]
    show("FIONREAD with nothing queued", count())
    sock.send(b"hello")
    sock.send(b"hi")
    select.select([fd], [], [], REPLY_TIMEOUT)
    time.sleep(0.2)
    show("FIONREAD is the first datagram's size", count())
    sock.recv(100)
    show("FIONREAD after one read", count())
    sock.recv(100)
    sock.send(b"")
    select.select([fd], [], [], REPLY_TIMEOUT)
    time.sleep(0.2)
    show("FIONREAD of an empty datagram", count())
    sock.close()


def shutdown_connected():
    sock = udp()
    sock.connect(ECHO)
    show("shutdown SHUT_RD", outcome(lambda: sock.shutdown(socket.SHUT_RD)))
    show("send after SHUT_RD", outcome(lambda: sock.send(b"after SHUT_RD")))
    show("recv after SHUT_RD", outcome(lambda: sock.recv(100)))
    show("shutdown SHUT_WR", outcome(lambda: sock.shutdown(socket.SHUT_WR)))
    show("send after SHUT_WR", outcome(lambda: sock.send(b"x")))
    show("sendto after SHUT_WR", outcome(lambda: sock.sendto(b"x", ECHO)))
    sock.close()
    sock = udp()
    sock.connect(ECHO)
    show("shutdown SHUT_RDWR", outcome(lambda: sock.shutdown(socket.SHUT_RDWR)))
    show("send after SHUT_RDWR", outcome(lambda: sock.send(b"x")))
    sock.close()


def local_large_datagrams():
    receiver = udp()
    receiver.bind(("127.0.0.1", 0))
    sender = udp()
    sender.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO)
    target = ("127.0.0.1", receiver.getsockname()[1])
    show("loopback sendto of 65507 bytes with IP_PMTUDISC_DO", outcome(lambda: sender.sendto(b"l" * 65507, target)))
    show("loopback datagram arrives whole", len(receiver.recv(65535)))
    sender.close()
    receiver.close()


SCENARIOS = [
    identity,
    implicit_bind,
    boundaries,
    scatter_gather,
    connected,
    port_unreachable,
    nonblocking,
    explicit_bind,
    multiple_messages,
    forked,
    exec_inherited,
    passed_in_message,
    fcntl_copy,
    disconnect_keeps_bound_address,
    unusual_connect_targets,
    unreachable,
    broadcast,
    queued_bytes,
    shutdown_connected,
    local_large_datagrams,
]
for scenario in SCENARIOS:
    show("scenario", scenario.__name__)
    scenario()
show("done", True)
