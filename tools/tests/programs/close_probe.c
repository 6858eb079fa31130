/* Close and half-close probe: connects to a peer, runs one scenario and prints what it
 * observed, one "key value" line per observation, so a run against the kernel and a run
 * through netcon can be compared line by line. Exits 1 with a message on stderr when a call
 * fails that the scenario does not expect to fail.
 *
 * Modes (IP and PORT name the peer):
 *   linger-zero IP PORT   SO_LINGER {1, 0}, exchange a line, close
 *   unread-close IP PORT  wait for the peer's data, close without reading it
 *   read-close IP PORT    read the peer's data to the end of its line, close
 *   rdhup IP PORT         poll and epoll readiness before and after the peer's FIN
 *   hold IP PORT COUNT HOW
 *                         open COUNT connections, half-close them (HOW is "peer": wait for
 *                         the peer's FIN on each; "program": shut down our write side), print
 *                         "half-closed COUNT" and wait until a signal ends the probe */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

static int connect_to(const char *ip, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "probe: invalid IPv4 address %s\n", ip);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    return fd;
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

/* Reads up to and including '\n'; returns the bytes read (0 at EOF). */
static size_t read_line(int fd, char *out, size_t len) {
    size_t used = 0;
    while (used + 1 < len) {
        ssize_t n = read(fd, out + used, 1);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read line");
        if (n == 0) break;
        if (out[used++] == '\n') break;
    }
    out[used] = 0;
    return used;
}

/* Waits up to 10 s until fd has data to read. */
static void wait_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 10000) != 1) {
        fprintf(stderr, "probe: nothing to read within 10 s\n");
        exit(1);
    }
}

static void linger_zero(const char *ip, int port) {
    int fd = connect_to(ip, port);
    struct linger set = {.l_onoff = 1, .l_linger = 0};
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &set, sizeof set) < 0) die("SO_LINGER");
    struct linger got = {-1, -1};
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_SOCKET, SO_LINGER, &got, &len) < 0) die("getsockopt SO_LINGER");
    printf("linger %d %d len %u\n", got.l_onoff, got.l_linger, (unsigned)len);
    write_all(fd, "hello\n", 6);
    char line[64];
    read_line(fd, line, sizeof line);
    printf("peer-replied %s", line);
    close(fd);
    printf("closed\n");
}

static void unread_close(const char *ip, int port) {
    int fd = connect_to(ip, port);
    write_all(fd, "send\n", 5);
    wait_readable(fd);
    /* Give the rest of the peer's data time to arrive (and fill the buffers when it is
     * large), so the close finds it queued. */
    usleep(1000 * 1000);
    close(fd);
    printf("closed-unread\n");
}

static void read_close(const char *ip, int port) {
    int fd = connect_to(ip, port);
    write_all(fd, "send\n", 5);
    static char line[1 << 16];
    size_t n = read_line(fd, line, sizeof line);
    printf("read %zu\n", n);
    close(fd);
    printf("closed\n");
}

/* The poll events of interest, by name, in a fixed order. */
static void print_poll(const char *stage, short revents) {
    printf("%s poll%s%s%s%s%s\n", stage, revents & POLLIN ? " POLLIN" : "",
           revents & POLLOUT ? " POLLOUT" : "", revents & POLLRDHUP ? " POLLRDHUP" : "",
           revents & POLLHUP ? " POLLHUP" : "", revents & POLLERR ? " POLLERR" : "");
}

static void print_epoll(const char *stage, unsigned events) {
    printf("%s epoll%s%s%s%s%s\n", stage, events & EPOLLIN ? " EPOLLIN" : "",
           events & EPOLLOUT ? " EPOLLOUT" : "", events & EPOLLRDHUP ? " EPOLLRDHUP" : "",
           events & EPOLLHUP ? " EPOLLHUP" : "", events & EPOLLERR ? " EPOLLERR" : "");
}

/* Reports poll and level-triggered epoll readiness of fd without waiting. */
static void report_readiness(const char *stage, int fd, int epoll) {
    struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT | POLLRDHUP};
    if (poll(&p, 1, 0) < 0) die("poll");
    print_poll(stage, p.revents);
    struct epoll_event event = {0};
    int n = epoll_wait(epoll, &event, 1, 0);
    if (n < 0) die("epoll_wait");
    print_epoll(stage, n == 1 ? event.events : 0);
}

static void rdhup(const char *ip, int port) {
    int fd = connect_to(ip, port);
    int epoll = epoll_create1(0);
    if (epoll < 0) die("epoll_create1");
    struct epoll_event watch = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP, .data.fd = fd};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &watch) < 0) die("epoll_ctl");
    report_readiness("open", fd, epoll);

    /* The peer shuts down its write side once it has read this line. */
    write_all(fd, "shut\n", 5);
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int ready = poll(&p, 1, 10000);
    printf("wait-rdhup %s\n", ready == 1 ? "raised" : "timed-out");
    report_readiness("peer-fin", fd, epoll);

    /* A separate epoll instance that waits for EPOLLRDHUP alone. */
    int only = epoll_create1(0);
    struct epoll_event rdhup_only = {.events = EPOLLRDHUP, .data.fd = fd};
    if (only < 0 || epoll_ctl(only, EPOLL_CTL_ADD, fd, &rdhup_only) < 0) die("epoll rdhup");
    struct epoll_event event = {0};
    int n = epoll_wait(only, &event, 1, 10000);
    print_epoll("rdhup-only", n == 1 ? event.events : 0);

    char byte;
    printf("read %zd\n", read(fd, &byte, 1));
    /* The connection is half-closed: the peer still reads what we send. */
    write_all(fd, "after-fin\n", 10);
    if (shutdown(fd, SHUT_WR) < 0) die("shutdown");
    usleep(200 * 1000);
    report_readiness("both-shut", fd, epoll);
    close(fd);
}

static void hold(const char *ip, int port, int count, const char *how) {
    int *fds = calloc(count, sizeof *fds);
    if (!fds) die("calloc");
    for (int i = 0; i < count; i++) fds[i] = connect_to(ip, port);
    int peer_shuts = strcmp(how, "peer") == 0;
    for (int i = 0; i < count; i++) {
        if (peer_shuts) {
            char byte;
            ssize_t n;
            do n = read(fds[i], &byte, 1);
            while (n < 0 && errno == EINTR);
            if (n != 0) {
                fprintf(stderr, "probe: connection %d: expected EOF, read returned %zd\n", i, n);
                exit(1);
            }
        } else if (shutdown(fds[i], SHUT_WR) < 0) {
            die("shutdown");
        }
    }
    printf("half-closed %d\n", count);
    fflush(stdout);
    for (;;) pause();
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 4) {
        fprintf(stderr, "usage: close-probe MODE IP PORT [ARGS...]\n");
        return 2;
    }
    const char *mode = argv[1], *ip = argv[2];
    int port = atoi(argv[3]);
    if (strcmp(mode, "linger-zero") == 0 && argc == 4) {
        linger_zero(ip, port);
    } else if (strcmp(mode, "unread-close") == 0 && argc == 4) {
        unread_close(ip, port);
    } else if (strcmp(mode, "read-close") == 0 && argc == 4) {
        read_close(ip, port);
    } else if (strcmp(mode, "rdhup") == 0 && argc == 4) {
        rdhup(ip, port);
    } else if (strcmp(mode, "hold") == 0 && argc == 6) {
        hold(ip, port, atoi(argv[4]), argv[5]);
    } else {
        fprintf(stderr, "close-probe: unknown mode or wrong arguments: %s\n", mode);
        return 2;
    }
    return 0;
}
