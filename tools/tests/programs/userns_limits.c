/* Runs PROGRAM ARGS... where creating namespaces fails, as on machines that forbid it.
 *
 *   limit PROGRAM...    as uid and gid 65534 in a user namespace of its own (ids 0 and 65534
 *                       mapped to themselves) whose user.max_user_namespaces is 0
 *   seccomp PROGRAM...  as uid and gid 65534, with a seccomp filter that fails unshare with
 *                       EPERM, as container runtimes' default filters do
 *   seccomp-root PROGRAM...  the same filter, keeping uid 0
 *
 * Exits with the program's status, or 111 when a step of its own fails. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define NOBODY 65534

__attribute__((noreturn)) static void fail(const char *what) {
    fprintf(stderr, "userns_limits: %s: %s\n", what, strerror(errno));
    exit(111);
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text))
        fail(path);
    close(fd);
}

static void become_nobody(void) {
    if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
        setresuid(NOBODY, NOBODY, NOBODY) != 0)
        fail("switching to uid 65534");
}

static void deny_unshare(void) {
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_unshare, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog program = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        fail("PR_SET_NO_NEW_PRIVS");
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0)
        fail("PR_SET_SECCOMP");
}

/* Forks a child into a new user namespace, maps its ids from here, and lets it limit user
 * namespaces to 0 before it runs the program as 65534. */
static int run_limited(char **program) {
    int ready[2], mapped[2];
    if (pipe(ready) != 0 || pipe(mapped) != 0)
        fail("pipe");
    pid_t child = fork();
    if (child < 0)
        fail("fork");
    if (child == 0) {
        char byte = 0;
        if (unshare(CLONE_NEWUSER) != 0)
            fail("unshare");
        if (write(ready[1], &byte, 1) != 1 || read(mapped[0], &byte, 1) != 1)
            fail("waiting for the id maps");
        write_file("/proc/sys/user/max_user_namespaces", "0");
        become_nobody();
        execvp(program[0], program);
        fail(program[0]);
    }
    char byte, path[64];
    if (read(ready[0], &byte, 1) != 1)
        fail("waiting for the child");
    snprintf(path, sizeof path, "/proc/%d/uid_map", child);
    write_file(path, "0 0 1\n65534 65534 1\n");
    snprintf(path, sizeof path, "/proc/%d/gid_map", child);
    write_file(path, "0 0 1\n65534 65534 1\n");
    if (write(mapped[1], &byte, 1) != 1)
        fail("releasing the child");
    int status;
    if (waitpid(child, &status, 0) != child)
        fail("waitpid");
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s limit|seccomp|seccomp-root PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "limit") == 0)
        return run_limited(argv + 2);
    if (strcmp(argv[1], "seccomp") == 0)
        become_nobody();
    else if (strcmp(argv[1], "seccomp-root") != 0) {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    deny_unshare();
    execvp(argv[2], argv + 2);
    fail(argv[2]);
}
