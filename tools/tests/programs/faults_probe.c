/* Fault probe: holds a connection in one state (sending, receiving, or blocked in one call)
 * until something outside kills a process, then prints how the blocked call ended as
 * "CALL RESULT", where RESULT is a byte count or an errno name. Prints "ready" once it is in
 * that state. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static const char *name_of(int err) {
    const char *name = strerrorname_np(err);
    return name ? name : "unknown-errno";
}

static struct sockaddr_in ipv4(const char *ip, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "probe: invalid IPv4 address %s\n", ip);
        exit(2);
    }
    return addr;
}

static int tcp_socket(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    return fd;
}

static int connect_to(const char *ip, int port) {
    int fd = tcp_socket();
    struct sockaddr_in addr = ipv4(ip, port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    return fd;
}

/* Prints how a call ended: its byte count or fd, or its errno. */
static void report(const char *call, long result) {
    if (result < 0)
        printf("%s %s\n", call, name_of(errno));
    else
        printf("%s %ld\n", call, result);
}

static char buffer[1 << 16];

/* Writes until a write fails; returns its result. */
static long write_until_error(int fd) {
    for (;;) {
        ssize_t n = write(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n;
    }
}

/* Reads until EOF or an error; returns the last result. */
static long read_until_end(int fd) {
    for (;;) {
        ssize_t n = read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return n;
    }
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    memset(buffer, 'n', sizeof buffer);
    const char *mode = argc > 1 ? argv[1] : "";

    if (strcmp(mode, "send") == 0 && argc == 4) {
        int fd = connect_to(argv[2], atoi(argv[3]));
        printf("ready\n");
        report("write", write_until_error(fd));
    } else if (strcmp(mode, "receive") == 0 && argc == 4) {
        int fd = connect_to(argv[2], atoi(argv[3]));
        printf("ready\n");
        report("read", read_until_end(fd));
    } else if (strcmp(mode, "accept") == 0 && argc == 3) {
        int fd = tcp_socket();
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        struct sockaddr_in addr = ipv4("0.0.0.0", atoi(argv[2]));
        if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
        if (listen(fd, 8) < 0) die("listen");
        printf("ready\n");
        report("accept", accept(fd, NULL, NULL));
        report("accept-again", accept(fd, NULL, NULL));
    } else if (strcmp(mode, "connect") == 0 && argc == 4) {
        int fd = tcp_socket();
        struct sockaddr_in addr = ipv4(argv[2], atoi(argv[3]));
        printf("ready\n");
        fflush(stdout);
        report("connect", connect(fd, (struct sockaddr *)&addr, sizeof addr));
    } else if (strcmp(mode, "read") == 0 && argc == 4) {
        int fd = connect_to(argv[2], atoi(argv[3]));
        printf("ready\n");
        report("read", read(fd, buffer, sizeof buffer));
        report("read-again", read(fd, buffer, sizeof buffer));
    } else if (strcmp(mode, "write") == 0 && argc == 4) {
        int fd = connect_to(argv[2], atoi(argv[3]));
        printf("ready\n");
        report("write", write_until_error(fd));
        report("write-again", write(fd, buffer, sizeof buffer));
    } else {
        fprintf(stderr, "usage: probe send|receive|read|write|connect IP PORT, probe accept PORT\n");
        return 2;
    }
    return 0;
}
