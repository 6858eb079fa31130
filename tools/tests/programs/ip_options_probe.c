/* IP header options probe: sets IP_TOS and IP_TTL, prints what reads back, and moves data so
 * that the packets it sends can be counted on the wire. Exits 1 with a message on stderr when
 * a call fails.
 *
 * Modes:
 *   client IP PORT TOS TTL NEXT_TOS
 *       sets TOS and TTL before connecting, sends 64 KiB and waits for the peer's "got" line,
 *       sets NEXT_TOS, sends 64 KiB more, shuts down its write side and reads until EOF
 *   client6 IP PORT TCLASS NEXT_TCLASS
 *       the same over AF_INET6 with IPV6_TCLASS, and no TTL
 *   server PORT TOS TTL
 *       sets TOS and TTL on a listener on 0.0.0.0:PORT, prints "listening", accepts one
 *       connection, prints what it inherited, sends 64 KiB and closes */
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

#define BLOCK_LEN (64 * 1024)

static void die(const char *what) {
    fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void set_int(int fd, int level, int name, int value, const char *label) {
    if (setsockopt(fd, level, name, &value, sizeof value) < 0) die(label);
}

static void print_ip_options(const char *stage, int fd) {
    int tos = -1, ttl = -1;
    socklen_t len = sizeof tos;
    if (getsockopt(fd, IPPROTO_IP, IP_TOS, &tos, &len) < 0) die("getsockopt IP_TOS");
    len = sizeof ttl;
    if (getsockopt(fd, IPPROTO_IP, IP_TTL, &ttl, &len) < 0) die("getsockopt IP_TTL");
    printf("%s IP_TOS %#x IP_TTL %d\n", stage, tos, ttl);
}

static void write_all(int fd, const char *data, size_t len) {
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("write");
        data += n;
        len -= n;
    }
}

static void send_block(int fd) {
    static char block[BLOCK_LEN];
    memset(block, 'x', sizeof block);
    write_all(fd, block, sizeof block);
}

/* Reads one line from fd into out (without the newline). */
static void read_line(int fd, char *out, size_t len) {
    size_t used = 0;
    while (used + 1 < len) {
        ssize_t n = read(fd, out + used, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read");
        if (n == 0 || out[used] == '\n') break;
        used++;
    }
    out[used] = 0;
}

static void read_to_end(int fd) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno != EINTR) die("read");
    }
}

static void print_tclass(const char *stage, int fd) {
    int tclass = -1;
    socklen_t len = sizeof tclass;
    if (getsockopt(fd, IPPROTO_IPV6, IPV6_TCLASS, &tclass, &len) < 0) die("IPV6_TCLASS");
    printf("%s IPV6_TCLASS %#x\n", stage, tclass);
}

/* Sends 64 KiB, waits for the peer's line, calls change, sends 64 KiB more, shuts down the
 * write side and reads until EOF. */
static void exchange(int fd, void (*change)(int fd, int value), int value) {
    char line[64];
    send_block(fd);
    read_line(fd, line, sizeof line);
    printf("peer %s\n", line);
    change(fd, value);
    send_block(fd);
    if (shutdown(fd, SHUT_WR) < 0) die("shutdown");
    read_to_end(fd);
    close(fd);
    printf("done\n");
}

static void change_tos(int fd, int tos) {
    set_int(fd, IPPROTO_IP, IP_TOS, tos, "IP_TOS again");
    print_ip_options("changed", fd);
}

static void change_tclass(int fd, int tclass) {
    set_int(fd, IPPROTO_IPV6, IPV6_TCLASS, tclass, "IPV6_TCLASS again");
    print_tclass("changed", fd);
}

static void client(const char *ip, int port, int tos, int ttl, int next_tos) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    set_int(fd, IPPROTO_IP, IP_TOS, tos, "IP_TOS");
    set_int(fd, IPPROTO_IP, IP_TTL, ttl, "IP_TTL");
    print_ip_options("before-connect", fd);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) die("inet_pton");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    print_ip_options("connected", fd);
    exchange(fd, change_tos, next_tos);
}

static void client6(const char *ip, int port, int tclass, int next_tclass) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    set_int(fd, IPPROTO_IPV6, IPV6_TCLASS, tclass, "IPV6_TCLASS");
    print_tclass("before-connect", fd);
    struct sockaddr_in6 addr = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (inet_pton(AF_INET6, ip, &addr.sin6_addr) != 1) die("inet_pton");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    print_tclass("connected", fd);
    exchange(fd, change_tclass, next_tclass);
}

static void server(int port, int tos, int ttl) {
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    set_int(listener, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
    set_int(listener, IPPROTO_IP, IP_TOS, tos, "IP_TOS");
    set_int(listener, IPPROTO_IP, IP_TTL, ttl, "IP_TTL");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 8) < 0) die("listen");
    printf("listening\n");
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) die("accept");
    print_ip_options("accepted", fd);
    send_block(fd);
    if (shutdown(fd, SHUT_WR) < 0) die("shutdown");
    read_to_end(fd);
    close(fd);
    close(listener);
    printf("done\n");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc == 7 && strcmp(argv[1], "client") == 0) {
        client(argv[2], atoi(argv[3]), strtol(argv[4], NULL, 0), atoi(argv[5]),
               strtol(argv[6], NULL, 0));
    } else if (argc == 6 && strcmp(argv[1], "client6") == 0) {
        client6(argv[2], atoi(argv[3]), strtol(argv[4], NULL, 0), strtol(argv[5], NULL, 0));
    } else if (argc == 5 && strcmp(argv[1], "server") == 0) {
        server(atoi(argv[2]), strtol(argv[3], NULL, 0), atoi(argv[4]));
    } else {
        fprintf(stderr, "usage: ip-options-probe client IP PORT TOS TTL NEXT_TOS | "
                        "client6 IP PORT TCLASS NEXT_TCLASS | server PORT TOS TTL\n");
        return 2;
    }
    return 0;
}
