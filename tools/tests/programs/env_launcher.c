/* Starts PROGRAM [ARG...] with an environment built by hand, as programs do that give their
 * children a fixed environment. The environment is {"NETCON_TEST_FIRST=1", EXTRA,
 * "NETCON_TEST_LAST=1"}, where EXTRA is the value of this program's own NETCON_TEST_EXTRA
 * variable (such as "LD_PRELOAD=libm.so.6") and is left out when that is not set.
 *   execve execvpe execle fexecve execveat syscall
 *            replace this process; when the call fails, print "failed ERRNO".
 *   vfork    vfork, then execve in the child; print "failed ERRNO" or "exit STATUS".
 *   posix_spawn posix_spawnp
 *            print "failed ERRNO" when the call fails, else "exit STATUS" of the child.
 *   environ-execv environ-execvp
 *            make the environment this process's own (clearenv, then putenv), then call
 *            execv or execvp, which pass environ.
 *   environ-system environ-popen
 *            the same, then run PROGRAM ARG... joined by spaces with system or popen, which
 *            copies the command's output; both print "exit STATUS".
 * execle takes at most six arguments after PROGRAM. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char *environment[4];

static int report_failure(int error) {
    printf("failed %s\n", error == EACCES ? "EACCES" : strerror(error));
    return 1;
}

static int report_status(int status) {
    if (WIFEXITED(status)) {
        printf("exit %d\n", WEXITSTATUS(status));
    } else {
        printf("signal %d\n", WTERMSIG(status));
    }
    return 0;
}

/* Fills `environment`: the first entry, EXTRA when given, the last entry, NULL. */
static void build_environment(void) {
    int count = 0;
    environment[count++] = "NETCON_TEST_FIRST=1";
    char *extra = getenv("NETCON_TEST_EXTRA");
    if (extra != NULL) {
        environment[count++] = strdup(extra);
    }
    environment[count++] = "NETCON_TEST_LAST=1";
    environment[count] = NULL;
}

/* Replaces the process's environment by `environment`. */
static void adopt_environment(void) {
    clearenv();
    for (char **entry = environment; *entry != NULL; entry++) {
        putenv(*entry);
    }
}

/* Returns ARGV joined by spaces, for system and popen. */
static char *join(char **argv) {
    size_t len = 1;
    for (char **arg = argv; *arg != NULL; arg++) {
        len += strlen(*arg) + 1;
    }
    char *command = calloc(len, 1);
    for (char **arg = argv; *arg != NULL; arg++) {
        if (arg != argv) {
            strcat(command, " ");
        }
        strcat(command, *arg);
    }
    return command;
}

/* Errno of a vfork child's failed execve: the child shares this process's memory. */
static volatile int child_errno;

static int run_vfork(char **argv) {
    child_errno = 0;
    pid_t pid = vfork();
    if (pid == 0) {
        execve(argv[0], argv, environment);
        child_errno = errno;
        _exit(127);
    }
    if (pid < 0) {
        return report_failure(errno);
    }
    int status;
    waitpid(pid, &status, 0);
    if (child_errno != 0) {
        return report_failure(child_errno);
    }
    return report_status(status);
}

static int run_spawn(int search, char **argv) {
    pid_t pid;
    int error = search ? posix_spawnp(&pid, argv[0], NULL, NULL, argv, environment)
                       : posix_spawn(&pid, argv[0], NULL, NULL, argv, environment);
    if (error != 0) {
        return report_failure(error);
    }
    int status;
    waitpid(pid, &status, 0);
    return report_status(status);
}

static int run_execle(const char *path, int count, char **a) {
    switch (count) {
    case 0: return execle(path, path, (char *)NULL, environment);
    case 1: return execle(path, path, a[0], (char *)NULL, environment);
    case 2: return execle(path, path, a[0], a[1], (char *)NULL, environment);
    case 3: return execle(path, path, a[0], a[1], a[2], (char *)NULL, environment);
    case 4: return execle(path, path, a[0], a[1], a[2], a[3], (char *)NULL, environment);
    case 5: return execle(path, path, a[0], a[1], a[2], a[3], a[4], (char *)NULL, environment);
    case 6:
        return execle(path, path, a[0], a[1], a[2], a[3], a[4], a[5], (char *)NULL, environment);
    default:
        fprintf(stderr, "execle takes at most six arguments\n");
        return 2;
    }
}

static int run_popen(char **argv) {
    FILE *output = popen(join(argv), "r");
    if (output == NULL) {
        return report_failure(errno);
    }
    char buffer[4096];
    size_t read;
    while ((read = fread(buffer, 1, sizeof buffer, output)) > 0) {
        fwrite(buffer, 1, read, stdout);
    }
    return report_status(pclose(output));
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODE PROGRAM [ARG...]\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1];
    char **child = argv + 2;
    const char *path = child[0];
    setvbuf(stdout, NULL, _IONBF, 0);
    build_environment();

    if (strcmp(mode, "execve") == 0) {
        execve(path, child, environment);
    } else if (strcmp(mode, "execvpe") == 0) {
        execvpe(path, child, environment);
    } else if (strcmp(mode, "execle") == 0) {
        if (run_execle(path, argc - 3, argv + 3) == 2) {
            return 2;
        }
    } else if (strcmp(mode, "fexecve") == 0) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            return report_failure(errno);
        }
        fexecve(fd, child, environment);
    } else if (strcmp(mode, "execveat") == 0) {
        execveat(AT_FDCWD, path, child, environment, 0);
    } else if (strcmp(mode, "syscall") == 0) {
        syscall(SYS_execve, path, child, environment);
    } else if (strcmp(mode, "vfork") == 0) {
        return run_vfork(child);
    } else if (strcmp(mode, "posix_spawn") == 0 || strcmp(mode, "posix_spawnp") == 0) {
        return run_spawn(strcmp(mode, "posix_spawnp") == 0, child);
    } else if (strcmp(mode, "environ-execv") == 0) {
        adopt_environment();
        execv(path, child);
    } else if (strcmp(mode, "environ-execvp") == 0) {
        adopt_environment();
        execvp(path, child);
    } else if (strcmp(mode, "environ-system") == 0) {
        char *command = join(child);
        adopt_environment();
        int status = system(command);
        if (status < 0) {
            return report_failure(errno);
        }
        return report_status(status);
    } else if (strcmp(mode, "environ-popen") == 0) {
        adopt_environment();
        return run_popen(child);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return report_failure(errno);
}
