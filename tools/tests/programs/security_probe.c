/* Control socket client for the security tests: sends one request, given as hex, to the
 * control socket and prints the answer as "reply HEX", "closed" (the service closed the
 * connection without replying), "timeout", or "connect ERRNO" when the socket cannot be
 * connected to (ERRNO as a name, such as EACCES). Usage: probe SOCKET HEX */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static size_t from_hex(const char *hex, unsigned char *out, size_t max) {
    size_t len = strlen(hex) / 2;
    if (len > max) {
        fprintf(stderr, "probe: request longer than %zu bytes\n", max);
        exit(2);
    }
    for (size_t i = 0; i < len; i++) sscanf(hex + 2 * i, "%2hhx", &out[i]);
    return len;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc != 3) {
        fprintf(stderr, "usage: probe SOCKET HEX\n");
        return 2;
    }
    static unsigned char request[1 << 17];
    size_t len = from_hex(argv[2], request, sizeof request);

    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", argv[1]);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        printf("connect %s\n", strerrorname_np(errno));
        return 0;
    }

    if (send(fd, request, len, MSG_NOSIGNAL) < 0) {
        /* The service may have closed the connection already. */
        printf("closed\n");
        return 0;
    }

    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) {
        printf("timeout\n");
        return 0;
    }
    static unsigned char reply[1 << 12];
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    if (n <= 0) {
        printf("closed\n");
        return 0;
    }
    printf("reply ");
    for (ssize_t i = 0; i < n; i++) printf("%02x", reply[i]);
    printf("\n");
    return 0;
}
