"""Load clients for load_server.py at HOST:PORT, all with threads:
  transfer DIRECTION CONNS LEN   CONNS connections at once, each sending ("up") or receiving
                                 ("down") LEN bytes of its own stream, checked by SHA-256
  echo THREADS ROUNDS            each thread connects, echoes 4 KiB, closes, ROUNDS times
  cycles COUNT THREADS           COUNT short echo connections spread over THREADS threads
Usage: load_client.py HOST PORT MODE ARGS... Prints one summary line and exits 1 naming the
first failures.
"""
import hashlib, random, socket, sys, threading, time

host, port, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
args = [int(a) if a.isdigit() else a for a in sys.argv[4:]]
failures, lock = [], threading.Lock()

def fail(message):
    with lock:
        failures.append(message)

def blocks(seed, length):
    rng, left = random.Random(seed), length
    while left:
        size = min(left, 1 << 20)
        yield rng.randbytes(size)
        left -= size

def connect():
    conn = socket.create_connection((host, port), timeout=60)
    conn.settimeout(120)
    return conn

def transfer(index, direction, length):
    expected = hashlib.sha256()
    for block in blocks(index, length):
        expected.update(block)
    try:
        with connect() as conn:
            if direction == "up":
                conn.sendall(f"up {length}\n".encode())
                for block in blocks(index, length):
                    conn.sendall(block)
                answer = conn.makefile().readline().strip()
                received = length if answer == expected.hexdigest() else -1
            else:
                conn.sendall(f"down {length} {index}\n".encode())
                digest, received = hashlib.sha256(), 0
                while chunk := conn.recv(1 << 18):
                    digest.update(chunk)
                    received += len(chunk)
                if digest.digest() != expected.digest():
                    received = -1 if received == length else received
        if received != length:
            fail(f"connection {index}: {received} of {length} bytes, or checksum differs")
    except OSError as err:
        fail(f"connection {index}: {err!r}")

def echo_once(label, size):
    payload = random.Random(label).randbytes(size)
    with connect() as conn:
        conn.sendall(b"echo\n")
        conn.sendall(payload)
        echoed = b""
        while len(echoed) < size:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            echoed += chunk
    if echoed != payload:
        raise ValueError(f"{len(echoed)} of {size} bytes echoed, or content differs")

def echo_rounds(index, rounds):
    for round in range(rounds):
        try:
            echo_once(f"{index}-{round}", 4096)
        except (OSError, ValueError) as err:
            fail(f"thread {index} round {round}: {err!r}")
            return

def cycles(index, count):
    for cycle in range(count):
        try:
            echo_once(f"{index}-{cycle}", 16)
        except (OSError, ValueError) as err:
            fail(f"thread {index} cycle {cycle}: {err!r}")
            return

started = time.monotonic()
if mode == "transfer":
    direction, conns, length = args
    jobs = [(transfer, (i, direction, length)) for i in range(conns)]
elif mode == "echo":
    threads, rounds = args
    jobs = [(echo_rounds, (i, rounds)) for i in range(threads)]
elif mode == "cycles":
    count, threads = args
    jobs = [(cycles, (i, count // threads)) for i in range(threads)]
else:
    sys.exit(f"unknown mode {mode}")
workers = [threading.Thread(target=target, args=job_args) for target, job_args in jobs]
for worker in workers:
    worker.start()
for worker in workers:
    worker.join()
elapsed = time.monotonic() - started
print(f"{mode} {' '.join(map(str, args))}: {len(failures)} failures in {elapsed:.1f} s", flush=True)
if failures:
    sys.exit("; ".join(failures[:5]))
