"""Server for the load clients, on asyncio. Each connection starts with a header line:
"up LEN" (the client sends LEN bytes; the server answers with their SHA-256 in hex),
"down LEN SEED" (the server sends LEN bytes of the stream SEED names, then closes) or
"echo" (the server echoes until EOF). Usage: load_server.py HOST PORT. Prints "listening" once
it accepts connections.
"""
import asyncio, hashlib, random, sys

def blocks(seed, length):
    rng, left = random.Random(seed), length
    while left:
        size = min(left, 1 << 20)
        yield rng.randbytes(size)
        left -= size

async def handle(reader, writer):
    try:
        header = (await reader.readline()).decode().split()
        if header[0] == "up":
            left, digest = int(header[1]), hashlib.sha256()
            while left:
                chunk = await reader.read(min(left, 1 << 18))
                if not chunk:
                    break
                digest.update(chunk)
                left -= len(chunk)
            writer.write(f"{digest.hexdigest()}\n".encode())
        elif header[0] == "down":
            for block in blocks(int(header[2]), int(header[1])):
                writer.write(block)
                await writer.drain()
        elif header[0] == "echo":
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
        await writer.drain()
    except (ConnectionError, IndexError):
        pass
    finally:
        writer.close()

async def main():
    server = await asyncio.start_server(handle, sys.argv[1], int(sys.argv[2]), backlog=512)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
