/* Socket semantics probe: runs one socket scenario and prints what it observed, one
 * "key value" line per observation, so a run against the kernel and a run through netcon can
 * be compared line by line. Exits 1 with a message on stderr when a call fails that the
 * scenario does not expect to fail. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "probe: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* The errno's symbolic name, or "0". */
static const char *name_of(int err) {
    if (err == 0) return "0";
    const char *name = strerrorname_np(err);
    return name ? name : "unknown-errno";
}

/* The errno name of a call's result: "0" on success. */
static const char *result_of(int ret) { return ret < 0 ? name_of(errno) : "0"; }

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static struct sockaddr_in ipv4(const char *ip, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (inet_pton(AF_INET, ip, &addr.sin_addr) != 1) {
        fprintf(stderr, "probe: invalid IPv4 address %s\n", ip);
        exit(2);
    }
    return addr;
}

static char *format_addr(const struct sockaddr_in *addr, char *out, size_t len) {
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr->sin_addr, ip, sizeof ip);
    snprintf(out, len, "%s:%d", ip, ntohs(addr->sin_port));
    return out;
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

static int listen_on(int port, int backlog) {
    int fd = tcp_socket();
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
    struct sockaddr_in addr = ipv4("0.0.0.0", port);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(fd, backlog) < 0) die("listen");
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

static void send_file(int fd, const char *path) {
    int file = open(path, O_RDONLY);
    if (file < 0) die(path);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(file, buf, sizeof buf)) > 0) write_all(fd, buf, n);
    if (n < 0) die("read file");
    close(file);
}

/* Reads until EOF into the file at path; returns the byte count. */
static long receive_file(int fd, const char *path) {
    int file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (file < 0) die(path);
    static char buf[1 << 16];
    long total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("read socket");
        if (n == 0) break;
        if (write(file, buf, n) != n) die("write file");
        total += n;
    }
    close(file);
    return total;
}

/* Reads one line (up to '\n') into out, waiting with poll so non-blocking fds work too. */
static void read_line(int fd, char *out, size_t len) {
    size_t used = 0;
    while (used + 1 < len) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) != 1) {
            fprintf(stderr, "probe: no line within 10 s\n");
            exit(1);
        }
        ssize_t n = read(fd, out + used, 1);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n < 0) die("read line");
        if (n == 0 || out[used] == '\n') break;
        used++;
    }
    out[used] = 0;
}

/* Reads the client's line, writes reply and closes the connection. */
static void serve(int fd, const char *reply) {
    char line[256];
    read_line(fd, line, sizeof line);
    write_all(fd, reply, strlen(reply));
    close(fd);
}

static int option_int(int fd, int level, int name, int *value) {
    socklen_t len = sizeof *value;
    return getsockopt(fd, level, name, value, &len);
}

static void print_option(const char *label, int fd, int level, int name) {
    int value = -1;
    if (option_int(fd, level, name, &value) < 0)
        printf("%s %s\n", label, name_of(errno));
    else
        printf("%s %d\n", label, value);
}

/* --- Half-close and close-after-write scenarios on one connected fd. --- */

static void run_stream_scenario(int fd, const char *scenario, const char *send_path,
                                const char *recv_path) {
    if (strcmp(scenario, "shutdown-write") == 0) {
        send_file(fd, send_path);
        printf("shutdown %s\n", result_of(shutdown(fd, SHUT_WR)));
        long got = receive_file(fd, recv_path);
        printf("received-after-shutdown %s\n", got > 0 ? "yes" : "no");
        ssize_t n = write(fd, "x", 1);
        printf("write-after-shutdown %s\n", n < 0 ? name_of(errno) : "succeeded");
    } else if (strcmp(scenario, "peer-fin") == 0) {
        receive_file(fd, recv_path);
        printf("eof yes\n");
        char byte;
        printf("read-after-eof %zd\n", read(fd, &byte, 1));
        send_file(fd, send_path);
        printf("sent-after-eof yes\n");
    } else if (strcmp(scenario, "close-after-write") == 0) {
        send_file(fd, send_path);
    } else if (strcmp(scenario, "receive-all") == 0) {
        receive_file(fd, recv_path);
    } else {
        fprintf(stderr, "probe: unknown scenario %s\n", scenario);
        exit(2);
    }
    if (close(fd) < 0) die("close");
    printf("closed\n");
}

/* --- Connect outcomes. --- */

/* With again set, connect is called twice more after the result is known. */
static void connect_nonblocking(const char *ip, int port, int wait_ms, int again) {
    int fd = tcp_socket();
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("O_NONBLOCK");
    struct sockaddr_in addr = ipv4(ip, port);
    int ret = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    printf("connect %s\n", result_of(ret));

    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int ready = poll(&p, 1, wait_ms);
    if (ready == 0)
        printf("poll timeout\n");
    else
        printf("poll out=%d err=%d\n", !!(p.revents & POLLOUT), !!(p.revents & POLLERR));
    if (ready > 0 && !(p.revents & POLLOUT)) {
        /* Woken without POLLOUT: does the very next poll report it? */
        p.revents = 0;
        poll(&p, 1, 0);
        printf("poll again out=%d err=%d\n", !!(p.revents & POLLOUT),
               !!(p.revents & POLLERR));
    }

    int err = -1, err_again = -1;
    option_int(fd, SOL_SOCKET, SO_ERROR, &err);
    printf("so-error %s\n", name_of(err));
    option_int(fd, SOL_SOCKET, SO_ERROR, &err_again);
    printf("so-error-again %s\n", name_of(err_again));

    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    ret = getpeername(fd, (struct sockaddr *)&peer, &len);
    if (ret < 0)
        printf("getpeername %s\n", name_of(errno));
    else
        printf("getpeername %s\n", peer.sin_port == addr.sin_port ? "target" : "other");

    if (again) {
        ret = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        printf("connect-again %s\n", result_of(ret));
        ret = connect(fd, (struct sockaddr *)&addr, sizeof addr);
        printf("connect-third %s\n", result_of(ret));
    }
    if (err == 0 && ready > 0) {
        printf("write %s\n", write(fd, "x\n", 2) == 2 ? "0" : name_of(errno));
    }
    close(fd);
}

/* A non-blocking connect waited for with epoll (level-triggered EPOLLOUT), as event loops
 * do. */
static void connect_epoll(const char *ip, int port) {
    int fd = tcp_socket();
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("O_NONBLOCK");
    int epoll = epoll_create1(EPOLL_CLOEXEC);
    if (epoll < 0) die("epoll_create1");
    struct epoll_event event = {.events = EPOLLOUT, .data.fd = fd};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) < 0) die("epoll_ctl");
    struct sockaddr_in addr = ipv4(ip, port);
    int ret = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    printf("connect %s\n", result_of(ret));
    struct epoll_event got = {0};
    int ready = epoll_wait(epoll, &got, 1, 10000);
    if (ready == 0)
        printf("epoll timeout\n");
    else
        printf("epoll out=%d err=%d\n", !!(got.events & EPOLLOUT), !!(got.events & EPOLLERR));
    if (ready > 0 && !(got.events & EPOLLOUT)) {
        got.events = 0;
        epoll_wait(epoll, &got, 1, 0);
        printf("epoll again out=%d err=%d\n", !!(got.events & EPOLLOUT),
               !!(got.events & EPOLLERR));
    }
    int err = -1;
    option_int(fd, SOL_SOCKET, SO_ERROR, &err);
    printf("so-error %s\n", name_of(err));
    close(epoll);
    close(fd);
}

static void connect_blocking(const char *ip, int port) {
    int fd = tcp_socket();
    struct sockaddr_in addr = ipv4(ip, port);
    double start = now_seconds();
    int ret = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    printf("connect %s\n", result_of(ret));
    fprintf(stderr, "probe: connect took %.1f s\n", now_seconds() - start);
    close(fd);
}

/* --- accept, accept4 and the raw syscalls. --- */

static int accept_by(const char *method, int listener, struct sockaddr_in *peer,
                     socklen_t *len) {
    int flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    if (strcmp(method, "accept") == 0) return accept(listener, (struct sockaddr *)peer, len);
    if (strcmp(method, "accept4-noflags") == 0)
        return accept4(listener, (struct sockaddr *)peer, len, 0);
    if (strcmp(method, "accept4-flags") == 0)
        return accept4(listener, (struct sockaddr *)peer, len, flags);
    if (strcmp(method, "syscall-accept4") == 0)
        return syscall(SYS_accept4, listener, peer, len, flags);
    if (strcmp(method, "syscall-accept") == 0) return syscall(SYS_accept, listener, peer, len);
    if (strcmp(method, "accept-null") == 0) return accept(listener, NULL, NULL);
    if (strcmp(method, "accept-short") == 0) {
        *len = 4;
        return accept(listener, (struct sockaddr *)peer, len);
    }
    fprintf(stderr, "probe: unknown method %s\n", method);
    exit(2);
}

static const char *ACCEPT_METHODS[] = {"accept",          "accept4-noflags", "accept4-flags",
                                       "syscall-accept4", "syscall-accept",  "accept-null",
                                       "accept-short"};

/* Each client sends "LOCAL REMOTE\n" (its getsockname and getpeername); the accepted socket
 * must see the same two addresses the other way round. */
static void accept_names(int port) {
    int listener = listen_on(port, 8);
    printf("listening\n");
    for (size_t i = 0; i < sizeof ACCEPT_METHODS / sizeof *ACCEPT_METHODS; i++) {
        const char *method = ACCEPT_METHODS[i];
        struct sockaddr_in peer;
        memset(&peer, 0xaa, sizeof peer);
        socklen_t len = sizeof peer;
        int fd = accept_by(method, listener, &peer, &len);
        if (fd < 0) die(method);

        char line[256], client_local[64], client_remote[64];
        read_line(fd, line, sizeof line);
        if (sscanf(line, "%63s %63s", client_local, client_remote) != 2) {
            fprintf(stderr, "probe: bad client line %s\n", line);
            exit(1);
        }
        char text[64];
        printf("%s addrlen %u\n", method, (unsigned)len);
        if (strcmp(method, "accept-short") == 0) {
            unsigned char *bytes = (unsigned char *)&peer;
            printf("%s family %s\n", method, peer.sin_family == AF_INET ? "AF_INET" : "other");
            printf("%s beyond-length %s\n", method,
                   bytes[4] == 0xaa && bytes[15] == 0xaa ? "untouched" : "written");
        } else if (strcmp(method, "accept-null") != 0) {
            format_addr(&peer, text, sizeof text);
            printf("%s peer-address %s\n", method,
                   strcmp(text, client_local) == 0 ? "matches" : text);
        }

        struct sockaddr_in name;
        socklen_t name_len = sizeof name;
        if (getsockname(fd, (struct sockaddr *)&name, &name_len) < 0) die("getsockname");
        format_addr(&name, text, sizeof text);
        printf("%s getsockname %s\n", method,
               strcmp(text, client_remote) == 0 ? "matches" : text);
        name_len = sizeof name;
        if (getpeername(fd, (struct sockaddr *)&name, &name_len) < 0) die("getpeername");
        format_addr(&name, text, sizeof text);
        printf("%s getpeername %s\n", method,
               strcmp(text, client_local) == 0 ? "matches" : text);

        printf("%s nonblock %d\n", method, !!(fcntl(fd, F_GETFL) & O_NONBLOCK));
        printf("%s cloexec %d\n", method, !!(fcntl(fd, F_GETFD) & FD_CLOEXEC));
        write_all(fd, "done\n", 5);
        close(fd);
    }
    close(listener);
}

/* Client side: getsockname must return the local address the peer accepted from. */
static void connect_names(const char *ip, int port) {
    int fd = connect_to(ip, port);
    struct sockaddr_in local, remote;
    socklen_t len = sizeof local;
    if (getsockname(fd, (struct sockaddr *)&local, &len) < 0) die("getsockname");
    len = sizeof remote;
    if (getpeername(fd, (struct sockaddr *)&remote, &len) < 0) die("getpeername");
    char local_text[64], remote_text[64], line[256];
    format_addr(&local, local_text, sizeof local_text);
    format_addr(&remote, remote_text, sizeof remote_text);
    printf("getsockname-port %s\n", local.sin_port != 0 ? "set" : "zero");
    char expected_remote[64];
    snprintf(expected_remote, sizeof expected_remote, "%s:%d", ip, port);
    printf("getpeername %s\n", strcmp(remote_text, expected_remote) == 0 ? "target" : remote_text);
    /* The peer sends back the address it accepted the connection from. */
    read_line(fd, line, sizeof line);
    printf("peer-sees-getsockname %s\n", strcmp(line, local_text) == 0 ? "yes" : line);
    close(fd);
}

/* --- Listeners shared by fork, dup and exec. --- */

static void fork_listener(int port) {
    int listener = listen_on(port, 8);
    pid_t child = fork();
    if (child < 0) die("fork");
    if (child == 0) {
        close(listener);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    printf("listening\n");
    int fd = accept(listener, NULL, NULL);
    if (fd < 0) die("accept after the child closed its copy");
    serve(fd, "served-by-parent\n");
    printf("parent-accept 0\n");

    /* Two forked workers share the listener; each serves three connections. */
    pid_t workers[2];
    for (int w = 0; w < 2; w++) {
        workers[w] = fork();
        if (workers[w] < 0) die("fork worker");
        if (workers[w] == 0) {
            for (int i = 0; i < 3; i++) {
                int conn = accept(listener, NULL, NULL);
                if (conn < 0) die("accept in worker");
                serve(conn, "served-by-worker\n");
            }
            _exit(0);
        }
    }
    close(listener);
    for (int w = 0; w < 2; w++) {
        waitpid(workers[w], &status, 0);
        printf("worker-exit %d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
}

static void dup_listener(int port) {
    int listener = listen_on(port, 8);
    int copies[4];
    copies[0] = dup(listener);
    copies[1] = dup2(listener, 100);
    copies[2] = fcntl(listener, F_DUPFD, 200);
    copies[3] = fcntl(listener, F_DUPFD_CLOEXEC, 300);
    for (int i = 0; i < 4; i++)
        if (copies[i] < 0) die("dup");
    printf("dupfd-cloexec %d\n", !!(fcntl(copies[3], F_GETFD) & FD_CLOEXEC));
    close(listener);
    printf("listening\n");
    for (int i = 0; i < 4; i++) {
        int fd = accept(copies[i], NULL, NULL);
        if (fd < 0) die("accept on a copy");
        int accepting = -1;
        option_int(copies[i], SOL_SOCKET, SO_ACCEPTCONN, &accepting);
        printf("copy-%d acceptconn %d\n", i, accepting);
        serve(fd, "served-by-copy\n");
        close(copies[i]);
    }
    printf("all-copies-closed\n");
}

static void dup_stream(const char *ip, int port) {
    int fd = connect_to(ip, port);
    int copy = dup(fd);
    if (copy < 0) die("dup");
    close(fd);
    usleep(200 * 1000);
    write_all(copy, "after-close\n", 12);
    int second = dup2(copy, 150);
    if (second < 0) die("dup2");
    close(copy);
    usleep(200 * 1000);
    write_all(second, "via-dup2\n", 9);
    close(second);
    printf("closed\n");
}

static void exec_keeps(int port, const char *self) {
    int listener = listen_on(port, 8);
    printf("listening\n");
    fflush(stdout);
    int conn = accept(listener, NULL, NULL);
    if (conn < 0) die("accept");
    char listener_arg[16], conn_arg[16];
    snprintf(listener_arg, sizeof listener_arg, "%d", listener);
    snprintf(conn_arg, sizeof conn_arg, "%d", conn);
    execl(self, self, "exec-child", listener_arg, conn_arg, (char *)NULL);
    die("exec");
}

static void exec_child(int listener, int conn) {
    print_option("exec listener-acceptconn", listener, SOL_SOCKET, SO_ACCEPTCONN);
    print_option("exec conn-type", conn, SOL_SOCKET, SO_TYPE);
    print_option("exec conn-domain", conn, SOL_SOCKET, SO_DOMAIN);
    struct sockaddr_in peer;
    socklen_t len = sizeof peer;
    printf("exec getpeername %s\n", result_of(getpeername(conn, (struct sockaddr *)&peer, &len)));
    serve(conn, "served-after-exec\n");
    int second = accept(listener, NULL, NULL);
    if (second < 0) die("accept after exec");
    serve(second, "accepted-after-exec\n");
    printf("exec done\n");
}

/* --- Flow control. --- */

/* Connects and reads nothing for 3 s, then reads slowly for 1 s, then everything. */
static void slow_reader(const char *ip, int port, const char *recv_path) {
    int fd = connect_to(ip, port);
    sleep(3);
    static char small[4096];
    double until = now_seconds() + 1.0;
    int file = open(recv_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (file < 0) die(recv_path);
    while (now_seconds() < until) {
        ssize_t n = read(fd, small, sizeof small);
        if (n < 0) die("slow read");
        if (n == 0) break;
        if (write(file, small, n) != n) die("write file");
        usleep(1000);
    }
    close(file);
    /* Appends the rest. */
    file = open(recv_path, O_WRONLY | O_APPEND);
    static char buf[1 << 16];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0)
        if (write(file, buf, n) != n) die("write file");
    if (n < 0) die("read");
    close(file);
    close(fd);
    printf("received\n");
}

/* Writes the file as fast as the connection takes it. Prints "stalled" when the socket stays
 * unwritable for 1 s, as it does while the reader does not read. */
static void fast_writer(const char *ip, int port, const char *send_path) {
    int fd = connect_to(ip, port);
    if (fcntl(fd, F_SETFL, O_NONBLOCK) < 0) die("O_NONBLOCK");
    int file = open(send_path, O_RDONLY);
    if (file < 0) die(send_path);
    static char buf[1 << 16];
    int stalled = 0;
    ssize_t n;
    while ((n = read(file, buf, sizeof buf)) > 0) {
        char *at = buf;
        while (n > 0) {
            ssize_t sent = write(fd, at, n);
            if (sent < 0 && errno == EAGAIN) {
                struct pollfd p = {.fd = fd, .events = POLLOUT};
                int ready = poll(&p, 1, stalled ? 60000 : 1000);
                if (ready == 0 && !stalled) {
                    stalled = 1;
                    printf("stalled\n");
                    fflush(stdout);
                } else if (ready == 0) {
                    fprintf(stderr, "probe: no progress for 60 s\n");
                    exit(1);
                }
                continue;
            }
            if (sent < 0) die("write");
            at += sent;
            n -= sent;
        }
    }
    close(file);
    close(fd);
    printf("sent\n");
}

/* --- Socket options. --- */

static void set_int(int fd, const char *label, int level, int name, int value) {
    int ret = setsockopt(fd, level, name, &value, sizeof value);
    printf("set %s %s\n", label, result_of(ret));
}

struct int_option {
    const char *label;
    int level, name, value;
};

static const struct int_option SETTABLE[] = {
    {"TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, 1},
    {"SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, 1},
    {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR, 1},
    {"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT, 1},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF, 65536},
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF, 65536},
    {"TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE, 30},
    {"TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL, 5},
    {"TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT, 3},
    {"TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT, 1000},
    {"IP_TOS", IPPROTO_IP, IP_TOS, 16},
};
#define SETTABLE_COUNT (sizeof SETTABLE / sizeof *SETTABLE)

static void print_identity(const char *stage, int fd) {
    char label[64];
    const char *names[] = {"SO_TYPE", "SO_DOMAIN", "SO_PROTOCOL", "SO_ACCEPTCONN", "SO_ERROR"};
    const int values[] = {SO_TYPE, SO_DOMAIN, SO_PROTOCOL, SO_ACCEPTCONN, SO_ERROR};
    for (int i = 0; i < 5; i++) {
        snprintf(label, sizeof label, "%s %s", stage, names[i]);
        print_option(label, fd, SOL_SOCKET, values[i]);
    }
}

static void print_settable(const char *stage, int fd) {
    char label[64];
    for (size_t i = 0; i < SETTABLE_COUNT; i++) {
        snprintf(label, sizeof label, "%s %s", stage, SETTABLE[i].label);
        print_option(label, fd, SETTABLE[i].level, SETTABLE[i].name);
    }
}

/* Sets options on a fresh socket, reads them back, connects and reads them again, turns some
 * off, and reads the identity options of a listener. */
static void options(const char *ip, int port) {
    int fd = tcp_socket();
    print_identity("fresh", fd);
    for (size_t i = 0; i < SETTABLE_COUNT; i++)
        set_int(fd, SETTABLE[i].label, SETTABLE[i].level, SETTABLE[i].name, SETTABLE[i].value);
    struct linger linger = {.l_onoff = 1, .l_linger = 5};
    printf("set SO_LINGER %s\n", result_of(setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger,
                                                        sizeof linger)));
    print_settable("after-set", fd);

    struct linger read_linger = {-1, -1};
    socklen_t len = sizeof read_linger;
    int ret = getsockopt(fd, SOL_SOCKET, SO_LINGER, &read_linger, &len);
    printf("after-set SO_LINGER %s %d %d\n", result_of(ret), read_linger.l_onoff,
           read_linger.l_linger);

    char byte = 1;
    printf("set TCP_NODELAY-short %s\n",
           result_of(setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &byte, 1)));

    struct sockaddr_in addr = ipv4(ip, port);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    print_identity("connected", fd);
    print_settable("connected", fd);
    set_int(fd, "TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY, 0);
    set_int(fd, "SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE, 0);
    print_option("connected-off TCP_NODELAY", fd, IPPROTO_TCP, TCP_NODELAY);
    print_option("connected-off SO_KEEPALIVE", fd, SOL_SOCKET, SO_KEEPALIVE);
    close(fd);

    int listener = listen_on(0, 8);
    print_identity("listener", listener);
    print_option("listener SO_REUSEADDR", listener, SOL_SOCKET, SO_REUSEADDR);
    close(listener);
}

/* Options a TCP socket does not have, at levels it does and does not serve. */
static void option_errors(void) {
    int fd = tcp_socket();
    int value = 1;
    printf("set IPV6_V6ONLY-on-ipv4 %s\n",
           result_of(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &value, sizeof value)));
    print_option("get IPV6_V6ONLY-on-ipv4", fd, IPPROTO_IPV6, IPV6_V6ONLY);
    printf("set unknown-socket-option %s\n",
           result_of(setsockopt(fd, SOL_SOCKET, 9999, &value, sizeof value)));
    print_option("get unknown-socket-option", fd, SOL_SOCKET, 9999);
    printf("set unknown-tcp-option %s\n",
           result_of(setsockopt(fd, IPPROTO_TCP, 9999, &value, sizeof value)));
    print_option("get unknown-tcp-option", fd, IPPROTO_TCP, 9999);
    printf("set unknown-level %s\n", result_of(setsockopt(fd, 4242, 1, &value, sizeof value)));
    print_option("get unknown-level", fd, 4242, 1);
    close(fd);
}

/* Default values of a fresh socket, before any setsockopt. */
static void option_defaults(void) {
    int fd = tcp_socket();
    print_settable("default", fd);
    print_option("default IP_TTL", fd, IPPROTO_IP, IP_TTL);
    print_option("default SO_RCVLOWAT", fd, SOL_SOCKET, SO_RCVLOWAT);
    print_option("default SO_PRIORITY", fd, SOL_SOCKET, SO_PRIORITY);
    print_option("default TCP_MAXSEG", fd, IPPROTO_TCP, TCP_MAXSEG);
    struct linger linger = {-1, -1};
    socklen_t len = sizeof linger;
    int ret = getsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, &len);
    printf("default SO_LINGER %s %d %d\n", result_of(ret), linger.l_onoff, linger.l_linger);
    struct timeval timeout = {-1, -1};
    len = sizeof timeout;
    ret = getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, &len);
    printf("default SO_RCVTIMEO %s %ld %ld\n", result_of(ret), (long)timeout.tv_sec,
           (long)timeout.tv_usec);
    close(fd);
}

static void ipv6_only(void) {
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    printf("socket-inet6 %s\n", fd < 0 ? name_of(errno) : "0");
    if (fd < 0) return;
    print_option("default IPV6_V6ONLY", fd, IPPROTO_IPV6, IPV6_V6ONLY);
    int one = 1;
    printf("set IPV6_V6ONLY %s\n",
           result_of(setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one)));
    print_option("after-set IPV6_V6ONLY", fd, IPPROTO_IPV6, IPV6_V6ONLY);
    close(fd);
}

/* SO_RCVTIMEO or SO_SNDTIMEO of 500 ms on a connection whose peer neither sends nor reads. */
static void io_timeout(const char *ip, int port, const char *which) {
    int fd = connect_to(ip, port);
    struct timeval timeout = {.tv_sec = 0, .tv_usec = 500 * 1000};
    int name = strcmp(which, "receive") == 0 ? SO_RCVTIMEO : SO_SNDTIMEO;
    if (setsockopt(fd, SOL_SOCKET, name, &timeout, sizeof timeout) < 0) die("timeout option");
    struct timeval read_back = {0, 0};
    socklen_t len = sizeof read_back;
    getsockopt(fd, SOL_SOCKET, name, &read_back, &len);
    printf("timeout-reads-back %s\n",
           read_back.tv_sec == 0 && read_back.tv_usec == 500000 ? "yes" : "no");
    fflush(stdout);
    double start = now_seconds();
    ssize_t n;
    if (name == SO_RCVTIMEO) {
        char byte;
        n = read(fd, &byte, 1);
    } else {
        static char buf[1 << 16];
        do n = write(fd, buf, sizeof buf);
        while (n > 0 && now_seconds() - start < 30);
    }
    double waited = now_seconds() - start;
    printf("%s %s\n", which, n < 0 ? name_of(errno) : "returned-data");
    fprintf(stderr, "probe: %s returned after %.2f s\n", which, waited);
    close(fd);
}

/* --- The option table: every option below is read and written on a fresh socket with
 * buffers of several lengths and with edge values, so both runs can be compared entry by
 * entry. --- */

struct table_option {
    const char *label;
    int level, name;
};

static const struct table_option OPTION_TABLE[] = {
    {"SO_DEBUG", SOL_SOCKET, SO_DEBUG},
    {"SO_REUSEADDR", SOL_SOCKET, SO_REUSEADDR},
    {"SO_TYPE", SOL_SOCKET, SO_TYPE},
    {"SO_ERROR", SOL_SOCKET, SO_ERROR},
    {"SO_DONTROUTE", SOL_SOCKET, SO_DONTROUTE},
    {"SO_BROADCAST", SOL_SOCKET, SO_BROADCAST},
    {"SO_SNDBUF", SOL_SOCKET, SO_SNDBUF},
    {"SO_RCVBUF", SOL_SOCKET, SO_RCVBUF},
    {"SO_KEEPALIVE", SOL_SOCKET, SO_KEEPALIVE},
    {"SO_OOBINLINE", SOL_SOCKET, SO_OOBINLINE},
    {"SO_PRIORITY", SOL_SOCKET, SO_PRIORITY},
    {"SO_LINGER", SOL_SOCKET, SO_LINGER},
    {"SO_REUSEPORT", SOL_SOCKET, SO_REUSEPORT},
    {"SO_PASSCRED", SOL_SOCKET, SO_PASSCRED},
    {"SO_RCVLOWAT", SOL_SOCKET, SO_RCVLOWAT},
    {"SO_SNDLOWAT", SOL_SOCKET, SO_SNDLOWAT},
    {"SO_RCVTIMEO", SOL_SOCKET, SO_RCVTIMEO},
    {"SO_SNDTIMEO", SOL_SOCKET, SO_SNDTIMEO},
    {"SO_TIMESTAMP", SOL_SOCKET, SO_TIMESTAMP},
    {"SO_ACCEPTCONN", SOL_SOCKET, SO_ACCEPTCONN},
    {"SO_MARK", SOL_SOCKET, SO_MARK},
    {"SO_PROTOCOL", SOL_SOCKET, SO_PROTOCOL},
    {"SO_DOMAIN", SOL_SOCKET, SO_DOMAIN},
    {"SO_PEEK_OFF", SOL_SOCKET, SO_PEEK_OFF},
    {"SO_BUSY_POLL", SOL_SOCKET, SO_BUSY_POLL},
    {"SO_INCOMING_CPU", SOL_SOCKET, SO_INCOMING_CPU},
    {"SO_ZEROCOPY", SOL_SOCKET, SO_ZEROCOPY},
    {"SOL_SOCKET-22", SOL_SOCKET, 22},
    {"SOL_SOCKET-9999", SOL_SOCKET, 9999},
    {"SOL_SOCKET-negative", SOL_SOCKET, -1},
    {"TCP_NODELAY", IPPROTO_TCP, TCP_NODELAY},
    {"TCP_MAXSEG", IPPROTO_TCP, TCP_MAXSEG},
    {"TCP_CORK", IPPROTO_TCP, TCP_CORK},
    {"TCP_KEEPIDLE", IPPROTO_TCP, TCP_KEEPIDLE},
    {"TCP_KEEPINTVL", IPPROTO_TCP, TCP_KEEPINTVL},
    {"TCP_KEEPCNT", IPPROTO_TCP, TCP_KEEPCNT},
    {"TCP_SYNCNT", IPPROTO_TCP, TCP_SYNCNT},
    {"TCP_QUICKACK", IPPROTO_TCP, TCP_QUICKACK},
    {"TCP_USER_TIMEOUT", IPPROTO_TCP, TCP_USER_TIMEOUT},
    {"TCP_FASTOPEN_CONNECT", IPPROTO_TCP, TCP_FASTOPEN_CONNECT},
    {"TCP_INQ", IPPROTO_TCP, TCP_INQ},
    {"TCP-15", IPPROTO_TCP, 15},
    {"TCP-9999", IPPROTO_TCP, 9999},
    {"IP_TOS", IPPROTO_IP, IP_TOS},
    {"IP_TTL", IPPROTO_IP, IP_TTL},
    {"IP_HDRINCL", IPPROTO_IP, IP_HDRINCL},
    {"IP_OPTIONS", IPPROTO_IP, IP_OPTIONS},
    {"IP_RECVTOS", IPPROTO_IP, IP_RECVTOS},
    {"IP_MTU_DISCOVER", IPPROTO_IP, IP_MTU_DISCOVER},
    {"IP_MTU", IPPROTO_IP, IP_MTU},
    {"IP_FREEBIND", IPPROTO_IP, IP_FREEBIND},
    {"IP_BIND_ADDRESS_NO_PORT", IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT},
    {"IP_MINTTL", IPPROTO_IP, IP_MINTTL},
    {"IP_MULTICAST_LOOP", IPPROTO_IP, IP_MULTICAST_LOOP},
    {"IP-9999", IPPROTO_IP, 9999},
    {"IPV6_V6ONLY-on-ipv4", IPPROTO_IPV6, IPV6_V6ONLY},
    {"level-4242", 4242, 1},
    {"level-udp", IPPROTO_UDP, 1},
};
#define OPTION_TABLE_COUNT (sizeof OPTION_TABLE / sizeof *OPTION_TABLE)

/* Buffer lengths getsockopt is called with, and value lengths setsockopt is called with. */
static const int GET_LENGTHS[] = {0, 1, 2, 3, 4, 8, 64};
static const int SET_LENGTHS[] = {0, 1, 2, 3, 4, 8, 16};
/* Int values setsockopt is called with (four bytes each). */
static const int SET_VALUES[] = {-1, 0, 1, 7, 88, 255, 256, 4096, 32767, 32768, 65536, 0x7fffffff};

#define COUNT(array) (sizeof array / sizeof *array)

/* Prints getsockopt's outcome: the errno, or the length and the bytes it returned. */
static void print_get(const char *label, const char *what, int fd, const struct table_option *o,
                      int len) {
    unsigned char buf[64];
    memset(buf, 0xee, sizeof buf);
    socklen_t got = len;
    int ret = getsockopt(fd, o->level, o->name, buf, &got);
    printf("%s %s", label, what);
    if (ret < 0) {
        printf(" %s\n", name_of(errno));
        return;
    }
    printf(" ok len=%u value=", (unsigned)got);
    for (socklen_t i = 0; i < got && i < sizeof buf; i++) printf("%02x", buf[i]);
    printf("\n");
}

static void option_table(void) {
    char what[64];
    for (size_t i = 0; i < OPTION_TABLE_COUNT; i++) {
        const struct table_option *o = &OPTION_TABLE[i];
        for (size_t j = 0; j < COUNT(GET_LENGTHS); j++) {
            int fd = tcp_socket();
            snprintf(what, sizeof what, "get len=%d", GET_LENGTHS[j]);
            print_get(o->label, what, fd, o, GET_LENGTHS[j]);
            close(fd);
        }
        for (size_t j = 0; j < COUNT(SET_LENGTHS); j++) {
            int fd = tcp_socket();
            /* One in the first byte and in the first int, zero after it. */
            unsigned char value[16] = {1};
            int ret = setsockopt(fd, o->level, o->name, value, SET_LENGTHS[j]);
            printf("%s set len=%d %s\n", o->label, SET_LENGTHS[j], result_of(ret));
            if (ret == 0) {
                snprintf(what, sizeof what, "after-set len=%d reads", SET_LENGTHS[j]);
                print_get(o->label, what, fd, o, 64);
            }
            close(fd);
        }
        for (size_t j = 0; j < COUNT(SET_VALUES); j++) {
            int fd = tcp_socket();
            int value[4] = {SET_VALUES[j], 0, 0, 0};
            /* Struct options get the value in their first int and zeros after it. */
            int ret = setsockopt(fd, o->level, o->name, value, sizeof value);
            int int_ret = setsockopt(fd, o->level, o->name, value, sizeof(int));
            printf("%s set value=%d %s %s\n", o->label, SET_VALUES[j], result_of(ret),
                   result_of(int_ret));
            snprintf(what, sizeof what, "after-value=%d reads", SET_VALUES[j]);
            print_get(o->label, what, fd, o, 64);
            close(fd);
        }
    }
}

/* SO_LINGER's two fields: l_onoff reads back as 0 or 1, and turning linger off keeps the
 * time. */
static void linger_table(void) {
    const struct linger sets[] = {{0, 5}, {1, 5}, {7, 9}, {0, 3}, {1, 0}};
    int fd = tcp_socket();
    for (size_t i = 0; i < COUNT(sets); i++) {
        int ret = setsockopt(fd, SOL_SOCKET, SO_LINGER, &sets[i], sizeof sets[i]);
        struct linger got = {-1, -1};
        socklen_t len = sizeof got;
        getsockopt(fd, SOL_SOCKET, SO_LINGER, &got, &len);
        printf("SO_LINGER set {%d,%d} %s reads {%d,%d} len=%u\n", sets[i].l_onoff,
               sets[i].l_linger, result_of(ret), got.l_onoff, got.l_linger, (unsigned)len);
    }
    close(fd);
}

/* SO_RCVTIMEO of 500 ms set before listen: accept gives up with EAGAIN when nobody connects,
 * the connection accepted later inherits the timeout, and a read on it gives up too. */
static void accept_timeout(int port) {
    int listener = tcp_socket();
    int one = 1;
    if (setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) die("SO_REUSEADDR");
    struct timeval timeout = {.tv_sec = 0, .tv_usec = 500 * 1000};
    if (setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) < 0)
        die("SO_RCVTIMEO");
    struct sockaddr_in addr = ipv4("0.0.0.0", port);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(listener, 8) < 0) die("listen");
    struct timeval read_back = {0, 0};
    socklen_t len = sizeof read_back;
    getsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &read_back, &len);
    printf("listener-timeout %ld.%06ld\n", (long)read_back.tv_sec, (long)read_back.tv_usec);
    double start = now_seconds();
    int fd = accept(listener, NULL, NULL);
    double waited = now_seconds() - start;
    printf("accept %s\n", fd < 0 ? name_of(errno) : "returned-connection");
    printf("accept-waited %s\n", waited >= 0.4 && waited < 5 ? "about-the-timeout" : "other");
    printf("listening\n");
    fflush(stdout);
    for (int attempt = 0; attempt < 40 && (fd = accept(listener, NULL, NULL)) < 0; attempt++)
        if (errno != EAGAIN) die("accept");
    if (fd < 0) die("accept");
    memset(&read_back, 0, sizeof read_back);
    len = sizeof read_back;
    getsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &read_back, &len);
    printf("accepted-timeout %ld.%06ld\n", (long)read_back.tv_sec, (long)read_back.tv_usec);
    char line[256];
    read_line(fd, line, sizeof line);
    char byte;
    ssize_t n = read(fd, &byte, 1);
    printf("read-after-line %s\n", n < 0 ? name_of(errno) : "returned-data");
    write_all(fd, "timed-out\n", 10);
    close(fd);
    close(listener);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: probe MODE ARGS...\n");
        return 2;
    }
    const char *mode = argv[1];
    if (strcmp(mode, "client") == 0 && argc == 7) {
        run_stream_scenario(connect_to(argv[2], atoi(argv[3])), argv[4], argv[5], argv[6]);
    } else if (strcmp(mode, "server") == 0 && argc == 6) {
        int listener = listen_on(atoi(argv[2]), 8);
        printf("listening\n");
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) die("accept");
        close(listener);
        run_stream_scenario(fd, argv[3], argv[4], argv[5]);
    } else if (strcmp(mode, "connect-nonblocking") == 0 && (argc == 5 || argc == 6)) {
        connect_nonblocking(argv[2], atoi(argv[3]), atoi(argv[4]), argc == 6);
    } else if (strcmp(mode, "connect-epoll") == 0 && argc == 4) {
        connect_epoll(argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "connect-blocking") == 0 && argc == 4) {
        connect_blocking(argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "accept-names") == 0 && argc == 3) {
        accept_names(atoi(argv[2]));
    } else if (strcmp(mode, "connect-names") == 0 && argc == 4) {
        connect_names(argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "fork-listener") == 0 && argc == 3) {
        fork_listener(atoi(argv[2]));
    } else if (strcmp(mode, "dup-listener") == 0 && argc == 3) {
        dup_listener(atoi(argv[2]));
    } else if (strcmp(mode, "dup-stream") == 0 && argc == 4) {
        dup_stream(argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "exec-keeps") == 0 && argc == 4) {
        exec_keeps(atoi(argv[2]), argv[3]);
    } else if (strcmp(mode, "exec-child") == 0 && argc == 4) {
        exec_child(atoi(argv[2]), atoi(argv[3]));
    } else if (strcmp(mode, "slow-reader") == 0 && argc == 5) {
        slow_reader(argv[2], atoi(argv[3]), argv[4]);
    } else if (strcmp(mode, "fast-writer") == 0 && argc == 5) {
        fast_writer(argv[2], atoi(argv[3]), argv[4]);
    } else if (strcmp(mode, "options") == 0 && argc == 4) {
        options(argv[2], atoi(argv[3]));
    } else if (strcmp(mode, "option-defaults") == 0 && argc == 2) {
        option_defaults();
    } else if (strcmp(mode, "option-errors") == 0 && argc == 2) {
        option_errors();
    } else if (strcmp(mode, "ipv6-only") == 0 && argc == 2) {
        ipv6_only();
    } else if (strcmp(mode, "option-table") == 0 && argc == 2) {
        option_table();
        linger_table();
    } else if (strcmp(mode, "accept-timeout") == 0 && argc == 3) {
        accept_timeout(atoi(argv[2]));
    } else if (strcmp(mode, "io-timeout") == 0 && argc == 5) {
        io_timeout(argv[2], atoi(argv[3]), argv[4]);
    } else {
        fprintf(stderr, "probe: unknown mode or wrong arguments: %s\n", mode);
        return 2;
    }
    return 0;
}
